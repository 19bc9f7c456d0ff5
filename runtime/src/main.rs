//! The `pintu` command: serve the rules, check a rules folder, manage API tokens and users.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use pintu::auth::users::NewUser;
use pintu::config::{Config, Limits, DEFAULT_CONFIG_FILE, DEFAULT_DATA_DIR, DEFAULT_PLUGINS_DIR};
use pintu::release::{self, ConnectorSetup, PluginFiles, SourceTree};
use pintu::services::recorder::{audit_op, Actor, AuditAction};

/// mimalloc rather than glibc's allocator: a reload holds tens of thousands of small rule files
/// while the server allocates per request, and glibc's free lists fragmented under that mix
/// (docs/benchmarks.md, "Reload").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use pintu::services::users;

#[derive(Parser)]
#[command(
    name = "pintu",
    version,
    about = "Rules-and-plugin runtime for regional permit offices"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the rules over HTTP, reloading them when they change.
    Serve {
        /// pintu.toml with the same settings plus every limit [default: ./pintu.toml if present]
        #[arg(long)]
        config: Option<PathBuf>,
        /// Rules folder [default: ./rules]
        #[arg(long)]
        rules: Option<PathBuf>,
        /// Connectors folder, released with the rules; a missing folder means no connectors
        /// [default: ./plugins]
        #[arg(long)]
        plugins: Option<PathBuf>,
        /// Data folder [default: ./data]
        #[arg(long)]
        data: Option<PathBuf>,
        /// Address to listen on [default: 127.0.0.1:8080]
        #[arg(long)]
        bind: Option<SocketAddr>,
    },
    /// Build a release from a rules folder and run every fixture; non-zero exit on any problem.
    Check {
        /// Rules folder to check.
        #[arg(default_value = "rules")]
        dir: PathBuf,
        /// Connectors folder checked with the rules (each loaded and type-checked); a missing
        /// folder means no connectors [default: the config's `plugins`, else ./plugins]
        #[arg(long)]
        plugins: Option<PathBuf>,
        /// Optional pintu.toml whose limits apply.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Manage users (staff accounts with roles and permit types) while the server is stopped;
    /// while it runs, use the `/admin/users` routes.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Print the Rhai definition file of the script API (for editor completion).
    Definitions,
    /// Inspect the database.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Verify every page of the database and read back every record; non-zero exit on any
    /// problem. Run it while `pintu serve` is stopped.
    Check {
        /// Data folder [default: ./data]
        #[arg(long)]
        data: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token and print it once; only its hash is stored.
    Create {
        /// One of the office's roles (`roles` in pintu.toml); by default admin, front_office,
        /// back_office, kabid_pelayanan, tim_teknis, kepala_dinas, bendahara.
        #[arg(long)]
        role: String,
        /// Who or what the token is for.
        #[arg(long, default_value = "")]
        label: String,
        /// Data folder [default: ./data]
        #[arg(long)]
        data: Option<PathBuf>,
        /// pintu.toml whose `roles` apply [default: ./pintu.toml if present]
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user.
    Add {
        /// 1 to 64 of a-z, 0-9, `.`, `_` and `-`.
        username: String,
        /// The user's full name.
        #[arg(long)]
        name: String,
        /// Nomor Induk Pegawai (18 digits), if the user has one.
        #[arg(long)]
        nip: Option<String>,
        /// One or more of the office's roles (`--role front_office --role admin`).
        #[arg(long = "role", required = true, num_args = 1.., action = clap::ArgAction::Append)]
        roles: Vec<String>,
        /// Permit type ids the user handles, or '*' for every permit type.
        #[arg(long = "permit", required = true, num_args = 1.., action = clap::ArgAction::Append)]
        permits: Vec<String>,
        /// Data folder [default: ./data]
        #[arg(long)]
        data: Option<PathBuf>,
        /// pintu.toml whose `roles` apply [default: ./pintu.toml if present]
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Create a token for a user and print it once; only its hash is stored.
    Token {
        username: String,
        /// Who or what the token is for (e.g. the desk or the device).
        #[arg(long, default_value = "")]
        label: String,
        /// Data folder [default: ./data]
        #[arg(long)]
        data: Option<PathBuf>,
    },
}

/// Keeps this process's memory in ordinary pages. mimalloc asks the kernel for transparent huge
/// pages, and then each fresh fault zeroes 2 MiB at once: a profile of the first save after
/// start-up at 1,000 permit types spent 40% of its samples zeroing huge pages for the store's
/// and the build's allocations. Without them that save took 79–81 ms instead of 124 ms, later
/// saves 71–78 ms instead of 80–87 ms, and resident memory was 15–20 MB smaller, with the same
/// levy times (docs/benchmarks.md, "Huge pages"). The flag holds for memory mapped before it too.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn disable_transparent_huge_pages() {
    // SAFETY: `PR_SET_THP_DISABLE` takes plain integers and changes no memory this process
    // can see; it only tells the kernel not to back later faults with huge pages.
    let done = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if done != 0 {
        // Only slower: the server works the same with huge pages.
        eprintln!(
            "pintu: could not turn off transparent huge pages: {}",
            std::io::Error::last_os_error()
        );
    }
}

fn main() -> ExitCode {
    #[cfg(target_os = "linux")]
    disable_transparent_huge_pages();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve {
            config,
            rules,
            plugins,
            data,
            bind,
        } => {
            let config = config_or_default(config);
            Config::resolve(config.as_deref(), rules, data, bind)
                .context("configuration")
                .and_then(|mut config| {
                    if let Some(plugins) = plugins {
                        config.plugins_dir = plugins;
                    }
                    serve(config)
                })
        }
        Command::Check {
            dir,
            plugins,
            config,
        } => check(&dir, plugins, config),
        Command::Token {
            command:
                TokenCommand::Create {
                    role,
                    label,
                    data,
                    config,
                },
        } => Config::resolve(config_or_default(config).as_deref(), None, None, None)
            .context("configuration")
            .and_then(|config| token_create(&config.roles, &role, &label, data)),
        Command::User {
            command:
                UserCommand::Add {
                    username,
                    name,
                    nip,
                    roles,
                    permits,
                    data,
                    config,
                },
        } => Config::resolve(config_or_default(config).as_deref(), None, None, None)
            .context("configuration")
            .and_then(|config| {
                let new = NewUser {
                    username,
                    name,
                    nip,
                    roles,
                    permits,
                };
                user_add(&config.roles, new, data)
            }),
        Command::User {
            command:
                UserCommand::Token {
                    username,
                    label,
                    data,
                },
        } => user_token(&username, &label, data),
        Command::Definitions => definitions(),
        Command::Store {
            command: StoreCommand::Check { data },
        } => store_check(data),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(config: Config) -> anyhow::Result<ExitCode> {
    let store = pintu::store::Store::open(&config.data_dir, config.limits.max_commit_batch)?;
    tracing::info!("database {}", store.path().display());
    if let Some(path) = pintu::auth::ensure_admin(&store, &config.data_dir)? {
        tracing::info!(
            "created the first admin token in {} (readable by this user only)",
            path.display()
        );
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let served = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.bind)
            .await
            .with_context(|| format!("cannot listen on {}", config.bind))?;
        tracing::info!(
            "rules folder {}, plugins folder {}",
            config.rules_dir.display(),
            config.plugins_dir.display()
        );
        let app = Arc::new(pintu::app::App::new(config, store));
        // Watching from before the start-up's read: a save made while it builds is held, and
        // reloaded once the start-up's release serves.
        let mut watcher = pintu::watch::start_if_configured(&app);
        app.start().await?;
        if let Some(w) = &mut watcher {
            w.reload_changes();
        }
        let _retention = app.spawn_retention();
        pintu::api::serve(app, listener, watcher).await?;
        Ok(ExitCode::SUCCESS)
    });
    // A read of the rules folder stuck past its deadline still holds a blocking thread; the
    // store is closed already, so exiting must not wait for it.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    served
}

fn check(
    dir: &std::path::Path,
    plugins: Option<PathBuf>,
    config: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let (limits, roles, plugins_dir, overrides) = match config {
        Some(path) => {
            let config = Config::resolve(Some(&path), None, None, None)?;
            (
                config.limits,
                config.roles,
                config.plugins_dir,
                config.connectors.config,
            )
        }
        None => (
            Limits::default(),
            pintu::auth::Roles::default(),
            PathBuf::from(DEFAULT_PLUGINS_DIR),
            Default::default(),
        ),
    };
    let plugins_dir = plugins.unwrap_or(plugins_dir);
    let read = SourceTree::read_dir(dir, &limits).and_then(|tree| {
        PluginFiles::read_dir(&plugins_dir).map(|plugins| tree.with_plugins(plugins))
    });
    let tree = match read {
        Ok(t) => t,
        Err(diags) => {
            for d in &diags {
                println!("{d}");
            }
            println!("cannot read {}: {} problems", dir.display(), diags.len());
            return Ok(ExitCode::FAILURE);
        }
    };
    // No compiled-code cache: checking writes nothing.
    let setup = ConnectorSetup::new(None, overrides);
    let report = match release::build_with(tree, &limits, &roles, None, &setup) {
        Ok(r) => r.report,
        Err(report) => report,
    };
    for w in &report.warnings {
        println!("{}:{}:{}: warning: {}", w.file, w.line, w.column, w.message);
    }
    for d in &report.diagnostics {
        println!("{d}");
        if let (Some(e), Some(a)) = (&d.expected, &d.actual) {
            println!("    expected: {e}");
            println!("    actual:   {a}");
        }
    }
    println!("{}", report.summary());
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The config file named, else a pintu.toml beside the working directory, which applies
/// without naming it.
fn config_or_default(named: Option<PathBuf>) -> Option<PathBuf> {
    named.or_else(|| {
        let default = PathBuf::from(DEFAULT_CONFIG_FILE);
        default.is_file().then_some(default)
    })
}

fn token_create(
    roles: &pintu::auth::Roles,
    role: &str,
    label: &str,
    data: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let data = data.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let store = pintu::store::Store::open(&data, 1).context(
        "cannot open the database (while `pintu serve` runs, create tokens with POST /admin/tokens)",
    )?;
    let (token, record) = pintu::auth::create_token(&store, roles, role, label)?;
    store.write_blocking(vec![audit_op(
        &Actor::Cli,
        AuditAction::CreateToken,
        serde_json::json!({ "id": record.id, "role": record.role, "label": record.label }),
    )])?;
    store.close();
    eprintln!(
        "created token {} with role {}; it is shown only once:",
        record.id, record.role
    );
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}

/// The database for a command that writes, with a hint when the server holds it.
fn open_for_cli(data: Option<PathBuf>, hint: &str) -> anyhow::Result<pintu::store::Store> {
    let data = data.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    pintu::store::Store::open(&data, 1)
        .with_context(|| format!("cannot open the database (while `pintu serve` runs, {hint})"))
}

fn user_add(
    roles: &pintu::auth::Roles,
    new: NewUser,
    data: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let store = open_for_cli(data, "create users with POST /admin/users")?;
    let created = users::create(&store, roles, new, &Actor::Cli);
    store.close();
    let user = created?;
    eprintln!(
        "created user {} ({}) with roles {} for permit types {}",
        user.username,
        user.name,
        user.roles.join(", "),
        user.permits.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}

fn user_token(username: &str, label: &str, data: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let store = open_for_cli(data, "create tokens with POST /admin/users/USERNAME/tokens")?;
    let created = users::create_token(&store, username, label, &Actor::Cli);
    store.close();
    let (token, record) = created?;
    eprintln!(
        "created token {} for user {username}; it is shown only once:",
        record.id
    );
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}

fn store_check(data: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let data = data.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let report = match pintu::store::check(&data) {
        Ok(r) => r,
        Err(e) => {
            println!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    for (table, records) in &report.tables {
        println!("{table}: {records} records");
    }
    for problem in &report.unreadable {
        println!("unreadable: {problem}");
    }
    let path = data.join(pintu::store::DB_FILE);
    if report.ok() {
        println!(
            "{}: ok ({} bytes; every page verified, every record read back)",
            path.display(),
            report.file_bytes
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "{}: {} unreadable records",
            path.display(),
            report.unreadable.len()
        );
        Ok(ExitCode::FAILURE)
    }
}

fn definitions() -> anyhow::Result<ExitCode> {
    print!("{}", pintu::scripts::definitions());
    Ok(ExitCode::SUCCESS)
}
