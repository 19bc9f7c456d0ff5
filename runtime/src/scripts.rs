//! The Rhai engine: exact decimals, sandbox limits, imports confined to `rules/lib`, and the
//! documented script API. One engine is built per release; its compiled scripts are evaluated
//! concurrently from many threads.

pub mod api;
mod deadline;
mod operators;
pub mod shared;
pub mod value;

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use rhai::module_resolvers::ModuleResolver;
use rhai::{
    CallFnOptions, Dynamic, Engine, EvalAltResult, FuncArgs, Module, Position, Scope, Shared, AST,
};

use crate::config::Limits;
use crate::diagnostic::Diagnostic;

/// Why an evaluation failed, located in the rule source where possible.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}:{}:{}: {message}", location.file, location.line, location.column)]
pub struct ScriptError {
    pub kind: ScriptErrorKind,
    pub location: Diagnostic,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptErrorKind {
    /// The script raised an error or misused a value.
    Runtime,
    /// A sandbox limit stopped it: operations, call depth, data size or wall-clock time.
    Limit,
}

impl ScriptError {
    pub fn diagnostic(&self) -> Diagnostic {
        Diagnostic {
            message: self.message.clone(),
            ..self.location.clone()
        }
    }
}

/// What one script call knows beyond its arguments. It is passed to every call explicitly and
/// travels with that call inside the engine (Rhai's call tag), so calls never share state
/// through the thread that runs them and may interleave freely.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallContext {
    /// The office date `today()` answers. `None` in fixtures that did not set one, so a rule
    /// reading the date cannot pass by luck.
    pub today: Option<chrono::NaiveDate>,
}

impl CallContext {
    pub fn on(today: chrono::NaiveDate) -> Self {
        Self { today: Some(today) }
    }
}

/// The context as the native functions of one call read it: the caller's, plus the deadline
/// the host set for that call.
#[derive(Debug, Clone)]
pub(crate) struct CallState {
    pub today: Option<chrono::NaiveDate>,
    pub deadline: Option<deadline::Deadline>,
}

/// The state of the call `ctx` belongs to; `None` outside a call (library top-level code
/// runs at build time, before any call).
pub(crate) fn call_state(ctx: &rhai::NativeCallContext) -> Option<CallState> {
    ctx.tag()
        .and_then(|tag| tag.read_lock::<CallState>().map(|s| s.clone()))
}

/// The engine of one release, with its shared library modules.
pub struct ScriptHost {
    engine: Engine,
    timeout: Duration,
    libs: Arc<LibResolver>,
}

/// A compiled script and the file it came from.
pub struct Script {
    ast: AST,
    file: String,
    /// For quoting the line of an error about a missing value.
    source: Arc<str>,
}

impl Script {
    pub fn file(&self) -> &str {
        &self.file
    }

    pub fn has_fn(&self, name: &str, arity: usize) -> bool {
        self.ast
            .iter_functions()
            .any(|f| f.name == name && f.params.len() == arity)
    }

    /// The line where `func` is defined, 0 if unknown.
    pub fn line_of(&self, func: &str) -> usize {
        fn_line(self, func)
    }
}

impl ScriptHost {
    /// `libs` maps module names (as written in `import "name"`) to `(file, source)`.
    pub fn new(limits: &Limits, libs: BTreeMap<String, (String, String)>) -> Self {
        let mut engine = Engine::new();
        engine.set_strict_variables(true);
        engine.set_max_operations(limits.max_operations);
        engine.set_max_call_levels(limits.max_call_levels);
        engine.set_max_expr_depths(limits.max_expr_depth, limits.max_expr_depth / 2);
        engine.set_max_string_size(limits.max_string_size);
        engine.set_max_array_size(limits.max_array_size);
        engine.set_max_map_size(limits.max_map_size);
        engine.set_max_modules(64);
        engine.on_progress(|ops| {
            deadline::expired_after(ops).then(|| Dynamic::from(deadline::WALL_CLOCK))
        });
        // Fast operators would answer `decimal > string` with Rhai's built-in `false` before the
        // rejecting operators below are looked up.
        engine.set_fast_operators(false);
        operators::register(&mut engine);
        // Scripts have no console; `print`/`debug` output goes to the server log.
        engine.on_print(|s| tracing::info!(target: "pintu::script", "{s}"));
        engine.on_debug(|s, src, pos| tracing::debug!(target: "pintu::script", "{}:{pos}: {s}", src.unwrap_or("")));
        api::register(&mut engine);
        shared::register(&mut engine);
        let libs = Arc::new(LibResolver::new(libs));
        engine.set_module_resolver(SharedResolver(libs.clone()));
        Self {
            engine,
            timeout: limits.script_timeout(),
            libs,
        }
    }

    /// A host with the same library modules under other `limits` (and a module cache of its
    /// own). Scripts compiled by either host run on both.
    pub fn with_limits(&self, limits: &Limits) -> Self {
        Self::new(limits, self.libs.sources.clone())
    }

    pub fn compile(&self, file: &str, source: &str) -> Result<Script, Diagnostic> {
        let mut ast = self
            .engine
            .compile(source)
            .map_err(|e| parse_diagnostic(file, &e))?;
        ast.set_source(file);
        Ok(Script {
            ast,
            file: file.to_owned(),
            source: source.into(),
        })
    }

    /// Compiles every library module and runs its top-level code, so that a broken one fails
    /// the release even if nothing imports it yet. Top-level code runs under the same limits as
    /// any script, wall-clock included, so a slow loop there cannot hang a reload.
    pub fn check_libs(&self) -> Vec<Diagnostic> {
        self.libs
            .names()
            .into_iter()
            .filter_map(|name| {
                let file = self.libs.file_of(&name);
                let deadline = deadline::Deadline::after(self.timeout);
                let loaded = deadline::watching(&deadline, || {
                    std::panic::catch_unwind(AssertUnwindSafe(|| {
                        self.libs.load(&self.engine, &name, Position::NONE)
                    }))
                });
                match loaded {
                    Ok(Ok(_)) => None,
                    Ok(Err(e)) => Some(self.quote_missing(describe(&e, &file), None)),
                    Err(panic) => Some(engine_failure(&file, 0, &*panic)),
                }
            })
            .map(|e| e.diagnostic())
            .collect()
    }

    /// Calls `func` in `script` in `context`, under the sandbox limits and a wall-clock
    /// deadline set for this call.
    pub fn call(
        &self,
        context: &CallContext,
        script: &Script,
        func: &str,
        args: impl FuncArgs,
    ) -> Result<Dynamic, ScriptError> {
        let mut scope = Scope::new();
        let deadline = deadline::Deadline::after(self.timeout);
        let state = CallState {
            today: context.today,
            deadline: Some(deadline.clone()),
        };
        // INVARIANT: a panic below the engine (a dependency's arithmetic, a native function)
        // fails this one call with a located error; it must never reach the caller, which would
        // answer without recording the decision.
        let result = deadline::watching(&deadline, || {
            std::panic::catch_unwind(AssertUnwindSafe(|| {
                self.engine.call_fn_with_options::<Dynamic>(
                    CallFnOptions::new().eval_ast(true).with_tag(state),
                    &mut scope,
                    &script.ast,
                    func,
                    args,
                )
            }))
        });
        match result {
            Ok(r) => r.map_err(|e| self.quote_missing(describe(&e, &script.file), Some(script))),
            Err(panic) => Err(engine_failure(&script.file, fn_line(script, func), &*panic)),
        }
    }

    /// Errors about a missing value (`()`) cannot name the key that was missing, so they quote
    /// the line the author wrote.
    fn quote_missing(&self, mut e: ScriptError, script: Option<&Script>) -> ScriptError {
        let about_missing = e.message.contains("`()`")
            || (e.message.contains("Function not found") && e.message.contains("()"));
        if !about_missing || e.location.line == 0 {
            return e;
        }
        let source = match script {
            Some(s) if s.file == e.location.file => Some(s.source.clone()),
            _ => self.libs.source_of_file(&e.location.file),
        };
        let line = source.as_deref().and_then(|text| {
            text.lines()
                .nth(e.location.line.saturating_sub(1))
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(|l| l.chars().take(160).collect::<String>())
        });
        if let Some(line) = line {
            e.message = format!("{}: in `{line}`", e.message);
        }
        e
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

/// The script API as a Rhai definition file, for editors' completion and hover help. The copy
/// in `host-api/definitions/pintu.d.rhai` is kept equal to this by a test.
pub fn definitions() -> String {
    // Only the API: the rejecting operators would tell editors that mixing types is allowed.
    let mut engine = Engine::new();
    api::register(&mut engine);
    let text = engine
        .definitions()
        .include_standard_packages(false)
        .static_module();
    format!("// Generated by `pintu definitions`; do not edit.\n{text}")
}

/// A panic inside the engine as a script error of `file`, at the line of the function called.
fn engine_failure(file: &str, line: usize, panic: &(dyn std::any::Any + Send)) -> ScriptError {
    let why = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown cause".to_owned());
    tracing::error!("script engine panicked in {file}: {why}");
    ScriptError {
        kind: ScriptErrorKind::Runtime,
        location: Diagnostic::new(file, line, 0, ""),
        message: format!("the script engine failed while running this script: {why}"),
    }
}

/// The line where `func` is defined in `script`, 0 if unknown.
fn fn_line(script: &Script, func: &str) -> usize {
    script
        .ast
        .iter_fn_def()
        .find(|def| def.name == func)
        .and_then(|def| def.body.start_position().line())
        .unwrap_or(0)
}

fn parse_diagnostic(file: &str, e: &rhai::ParseError) -> Diagnostic {
    let pos = e.position();
    Diagnostic::new(
        file,
        pos.line().unwrap_or(0),
        pos.position().unwrap_or(0),
        format!("syntax error: {}", e.err_type()),
    )
}

/// Finds the innermost error and the file it happened in.
fn describe(err: &EvalAltResult, file: &str) -> ScriptError {
    match err {
        EvalAltResult::ErrorInFunctionCall(_, src, inner, _) => {
            let file = if src.is_empty() { file } else { src.as_str() };
            describe(inner, file)
        }
        EvalAltResult::ErrorInModule(name, inner, pos) => {
            if let EvalAltResult::ErrorParsing(p, ppos) = inner.as_ref() {
                let lib = format!("lib/{name}.rhai");
                return ScriptError {
                    kind: ScriptErrorKind::Runtime,
                    location: Diagnostic::new(
                        lib,
                        ppos.line().unwrap_or(0),
                        ppos.position().unwrap_or(0),
                        "",
                    ),
                    message: format!("syntax error: {p}"),
                };
            }
            let inner_err = describe(inner, &format!("lib/{name}.rhai"));
            if inner_err.location.line == 0 {
                return located(file, *pos, inner_err.kind, inner_err.message);
            }
            inner_err
        }
        EvalAltResult::ErrorParsing(p, pos) => located(
            file,
            *pos,
            ScriptErrorKind::Runtime,
            format!("syntax error: {p}"),
        ),
        EvalAltResult::ErrorTooManyOperations(pos) => located(
            file,
            *pos,
            ScriptErrorKind::Limit,
            "script exceeded its operation limit".to_owned(),
        ),
        EvalAltResult::ErrorStackOverflow(pos) => located(
            file,
            *pos,
            ScriptErrorKind::Limit,
            "script exceeded its call depth limit".to_owned(),
        ),
        EvalAltResult::ErrorDataTooLarge(what, pos) => located(
            file,
            *pos,
            ScriptErrorKind::Limit,
            format!("script exceeded its size limit: {what}"),
        ),
        EvalAltResult::ErrorTerminated(_, pos) => located(
            file,
            *pos,
            ScriptErrorKind::Limit,
            "script exceeded its wall-clock limit".to_owned(),
        ),
        EvalAltResult::ErrorTooManyModules(pos) => located(
            file,
            *pos,
            ScriptErrorKind::Limit,
            "script imported too many modules".to_owned(),
        ),
        other => {
            let pos = other.position();
            let text = other.to_string();
            let suffix = format!(" ({pos})");
            let bare = text.strip_suffix(&suffix).unwrap_or(&text).to_owned();
            located(file, pos, ScriptErrorKind::Runtime, bare)
        }
    }
}

fn located(file: &str, pos: Position, kind: ScriptErrorKind, message: String) -> ScriptError {
    ScriptError {
        kind,
        location: Diagnostic::new(
            file,
            pos.line().unwrap_or(0),
            pos.position().unwrap_or(0),
            "",
        ),
        message,
    }
}

thread_local! {
    /// Depth of nested library loads on this thread; a module importing itself would otherwise
    /// recurse until the stack overflows.
    static LOAD_DEPTH: Cell<usize> = const { Cell::new(0) };
}
const MAX_IMPORT_DEPTH: usize = 16;

/// Resolves `import "name"` to `rules/lib/name.rhai` of the same release, and nothing else.
/// Modules are compiled on first use and cached for the life of the release. The release's
/// library check loads every module, so evaluations only read the cache (every call runs its
/// script's `import`s; a read lock lets concurrent calls do so without waiting on each other).
struct LibResolver {
    sources: BTreeMap<String, (String, String)>,
    cache: RwLock<HashMap<String, Shared<Module>>>,
}

impl LibResolver {
    fn new(sources: BTreeMap<String, (String, String)>) -> Self {
        Self {
            sources,
            cache: RwLock::new(HashMap::new()),
        }
    }

    fn names(&self) -> Vec<String> {
        self.sources.keys().cloned().collect()
    }

    fn source_of_file(&self, file: &str) -> Option<Arc<str>> {
        self.sources
            .values()
            .find(|(f, _)| f == file)
            .map(|(_, source)| Arc::from(source.as_str()))
    }

    fn file_of(&self, name: &str) -> String {
        self.sources
            .get(name)
            .map_or_else(|| format!("lib/{name}.rhai"), |(f, _)| f.clone())
    }

    fn load(
        &self,
        engine: &Engine,
        name: &str,
        pos: Position,
    ) -> Result<Shared<Module>, Box<EvalAltResult>> {
        if let Some(m) = self
            .cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
        {
            return Ok(m.clone());
        }
        let (file, source) = self
            .sources
            .get(name)
            .ok_or_else(|| Box::new(EvalAltResult::ErrorModuleNotFound(name.to_owned(), pos)))?;
        let depth = LOAD_DEPTH.with(|d| {
            d.set(d.get() + 1);
            d.get()
        });
        // Leaves the depth right even when the load unwinds (the caller catches panics).
        struct Unnest;
        impl Drop for Unnest {
            fn drop(&mut self) {
                LOAD_DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
            }
        }
        let unnest = Unnest;
        let result = if depth > MAX_IMPORT_DEPTH {
            Err(format!("import cycle through `{name}`").into())
        } else {
            engine
                .compile(source)
                .map_err(|e| Box::new(EvalAltResult::ErrorParsing(*e.0, e.1)))
                .and_then(|mut ast| {
                    ast.set_source(file.as_str());
                    Module::eval_ast_as_new(Scope::new(), &ast, engine)
                })
        };
        drop(unnest);
        let module: Shared<Module> = result
            .map_err(|e| Box::new(EvalAltResult::ErrorInModule(name.to_owned(), e, pos)))?
            .into();
        self.cache
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned(), module.clone());
        Ok(module)
    }
}

struct SharedResolver(Arc<LibResolver>);

impl ModuleResolver for SharedResolver {
    fn resolve(
        &self,
        engine: &Engine,
        _source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<Shared<Module>, Box<EvalAltResult>> {
        self.0.load(engine, path, pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;
    use std::time::Instant;

    fn host(libs: &[(&str, &str)]) -> ScriptHost {
        let libs = libs
            .iter()
            .map(|(n, s)| ((*n).to_owned(), (format!("lib/{n}.rhai"), (*s).to_owned())))
            .collect();
        ScriptHost::new(&Limits::default(), libs)
    }

    #[test]
    fn literals_are_exact_decimals() {
        let h = host(&[]);
        let s = h.compile("t.rhai", "fn f() { 0.1 + 0.2 }").unwrap();
        let out = h
            .call(&CallContext::default(), &s, "f", ())
            .unwrap()
            .cast::<Decimal>();
        assert_eq!(out, Decimal::from_str_exact("0.3").unwrap());
    }

    #[test]
    fn the_office_date_travels_with_the_call_not_the_thread() {
        let h = host(&[]);
        let s = h.compile("p/v.rhai", "fn f() { today() }").unwrap();
        let date = chrono::NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
        let context = CallContext::on(date);
        // The context is made on this thread and the call runs on another, as an evaluation
        // resumed after an async step may.
        let out = std::thread::scope(|t| t.spawn(|| h.call(&context, &s, "f", ())).join().unwrap())
            .unwrap();
        assert_eq!(out.to_string(), "2026-11-27");
        // Calls on one thread each answer their own context's date.
        let other = CallContext::on(date.succ_opt().unwrap());
        assert_eq!(
            h.call(&other, &s, "f", ()).unwrap().to_string(),
            "2026-11-28"
        );
        let e = h.call(&CallContext::default(), &s, "f", ()).unwrap_err();
        assert!(e.message.contains("today() has no date here"), "{e}");
    }

    #[test]
    fn imports_resolve_from_lib_inside_functions() {
        let h = host(&[("money", "fn double(x) { x * 2 }")]);
        let s = h
            .compile(
                "p/levy.rhai",
                "import \"money\" as m;\nfn f(x) { m::double(x) }",
            )
            .unwrap();
        assert_eq!(
            h.call(&CallContext::default(), &s, "f", (21_i64,))
                .unwrap()
                .as_int()
                .unwrap(),
            42
        );
    }

    #[test]
    fn unknown_import_is_an_error_naming_it() {
        let h = host(&[]);
        let s = h
            .compile(
                "p/v.rhai",
                "import \"../../etc/passwd\" as m;\nfn f() { 1 }",
            )
            .unwrap();
        let e = h.call(&CallContext::default(), &s, "f", ()).unwrap_err();
        assert!(e.message.contains("../../etc/passwd"), "{e}");
    }

    #[test]
    fn syntax_errors_carry_line_and_column() {
        let h = host(&[]);
        let d = h
            .compile("p/levy.rhai", "fn f() {\n  let x = ;\n}")
            .err()
            .unwrap();
        assert_eq!((d.file.as_str(), d.line), ("p/levy.rhai", 2));
        assert!(d.column > 0);
    }

    #[test]
    fn runtime_errors_inside_functions_are_located() {
        let h = host(&[]);
        let s = h
            .compile("p/levy.rhai", "fn f() {\n  let x = 1;\n  x + \"a\" * 2\n}")
            .unwrap();
        let e = h.call(&CallContext::default(), &s, "f", ()).unwrap_err();
        assert_eq!(e.location.file, "p/levy.rhai");
        assert_eq!(e.location.line, 3, "{e}");
    }

    #[test]
    fn infinite_loop_stops_at_a_limit() {
        let h = host(&[]);
        let s = h.compile("p/v.rhai", "fn f() { loop { } }").unwrap();
        let e = h.call(&CallContext::default(), &s, "f", ()).unwrap_err();
        assert_eq!(e.kind, ScriptErrorKind::Limit, "{e}");
    }

    #[test]
    fn wall_clock_limit_stops_slow_scripts() {
        let limits = Limits {
            max_operations: 0,
            script_timeout_ms: 50,
            ..Limits::default()
        };
        let h = ScriptHost::new(&limits, BTreeMap::new());
        let s = h.compile("p/v.rhai", "fn f() { loop { } }").unwrap();
        let started = Instant::now();
        let e = h.call(&CallContext::default(), &s, "f", ()).unwrap_err();
        assert!(e.message.contains("wall-clock"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn deep_recursion_and_giant_strings_stop_at_limits() {
        let h = host(&[]);
        let s = h
            .compile(
                "p/v.rhai",
                "fn deep(n) { deep(n + 1) }\nfn big() { let s = \"x\"; loop { s += s; } }",
            )
            .unwrap();
        assert_eq!(
            h.call(&CallContext::default(), &s, "deep", (0_i64,))
                .unwrap_err()
                .kind,
            ScriptErrorKind::Limit
        );
        assert_eq!(
            h.call(&CallContext::default(), &s, "big", ())
                .unwrap_err()
                .kind,
            ScriptErrorKind::Limit
        );
    }

    #[test]
    fn slow_native_calls_stop_at_the_wall_clock() {
        // Few operations (under a thousand), each a scan of a 10,000-item array: the clock was
        // read every 4,096 operations, so this ran to the end, far past its limit.
        let limits = Limits {
            max_operations: 0,
            script_timeout_ms: 50,
            ..Limits::default()
        };
        let h = ScriptHost::new(&limits, BTreeMap::new());
        let s = h
            .compile(
                "p/v.rhai",
                "fn f(xs) {\n  let n = 0;\n  for i in 0..400 { if xs.contains(`x${i}`) { n += 1; } }\n  n\n}",
            )
            .unwrap();
        let xs: rhai::Array = (0..10_000).map(|i| Dynamic::from(format!("{i}"))).collect();
        let started = Instant::now();
        let out = h.call(&CallContext::default(), &s, "f", (xs,));
        println!(
            "400 scans of 10,000 items under a 50 ms limit: {:?} after {:?}",
            out.as_ref()
                .map(|_| "finished")
                .map_err(|e| e.message.clone()),
            started.elapsed()
        );
        let e = out.unwrap_err();
        assert_eq!(e.kind, ScriptErrorKind::Limit, "{e}");
        assert!(e.message.contains("wall-clock"), "{e}");
    }

    #[test]
    fn library_top_level_code_runs_under_the_wall_clock_limit() {
        let limits = Limits {
            max_operations: 0,
            script_timeout_ms: 100,
            ..Limits::default()
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let libs = [(
                "lambat".to_owned(),
                (
                    "lib/lambat.rhai".to_owned(),
                    "// top level\nlet i = 0;\nloop { i += 1; }\nfn f() { 1 }".to_owned(),
                ),
            )]
            .into_iter()
            .collect();
            let h = ScriptHost::new(&limits, libs);
            let started = Instant::now();
            let found = h.check_libs();
            let _ = tx.send((found, started.elapsed()));
        });
        // Bounded wait: without a deadline the check never returns.
        let (found, took) = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the library check returns");
        println!("library top-level loop stopped after {took:?}: {found:?}");
        assert_eq!(found.len(), 1, "{found:?}");
        let d = &found[0];
        assert_eq!(d.file, "lib/lambat.rhai", "{d:?}");
        assert_eq!(d.line, 3, "{d:?}");
        assert!(d.message.contains("wall-clock"), "{d:?}");
    }

    #[test]
    fn decimal_overflow_in_a_script_is_a_located_error() {
        let h = host(&[]);
        let s = h
            .compile(
                "p/levy.rhai",
                "fn f() {\n  let x = decimal(\"79228162514264337593543950335\");\n  x * 2\n}\nfn g() {\n  round_money(decimal(\"79228162514264337593543950335\"), \"ceil_100\")\n}",
            )
            .unwrap();
        let e = h.call(&CallContext::default(), &s, "f", ()).unwrap_err();
        assert_eq!(
            (e.kind, e.location.line),
            (ScriptErrorKind::Runtime, 3),
            "{e}"
        );
        assert!(e.message.contains("overflow"), "{e}");
        let e = h.call(&CallContext::default(), &s, "g", ()).unwrap_err();
        assert_eq!(
            (e.kind, e.location.line),
            (ScriptErrorKind::Runtime, 6),
            "{e}"
        );
        assert!(e.message.contains("too large"), "{e}");
    }

    #[test]
    fn a_panic_in_the_engine_is_a_script_error_of_that_call() {
        let mut h = host(&[]);
        h.engine
            .register_fn("meledak", || -> rhai::INT { panic!("native bug") });
        let s = h
            .compile(
                "p/levy.rhai",
                "fn levy(d, p) {\n  meledak()\n}\nfn ok() { 1 }",
            )
            .unwrap();
        let e = h
            .call(
                &CallContext::default(),
                &s,
                "levy",
                (Dynamic::UNIT, Dynamic::UNIT),
            )
            .unwrap_err();
        assert_eq!(e.kind, ScriptErrorKind::Runtime, "{e}");
        assert_eq!(e.location.file, "p/levy.rhai");
        assert_eq!(e.location.line, 1, "{e}");
        assert!(e.message.contains("native bug"), "{e}");
        // The host keeps working on the same thread.
        assert_eq!(
            h.call(&CallContext::default(), &s, "ok", ())
                .unwrap()
                .as_int()
                .unwrap(),
            1
        );
    }

    #[test]
    fn missing_table_rows_quote_the_line_that_read_them() {
        let h = host(&[("angka", "fn harga(t, k) {\n  decimal(t[k].harga)\n}")]);
        let s = h
            .compile(
                "p/levy.rhai",
                "import \"angka\" as a;\nfn f(t) {\n  let x = decimal(t.pagar.harga);\n  x\n}\nfn g(t) {\n  t.pagar.indeks * 2\n}\nfn h(t) {\n  a::harga(t, \"pagar\")\n}",
            )
            .unwrap();
        let mut row = rhai::Map::new();
        row.insert("label".into(), "Pagar".into());
        let mut table = rhai::Map::new();
        table.insert("pagar".into(), Dynamic::from_map(row));
        let table = Dynamic::from_map(table);

        let e = h
            .call(&CallContext::default(), &s, "f", (table.clone(),))
            .unwrap_err();
        assert_eq!(
            (e.location.file.as_str(), e.location.line),
            ("p/levy.rhai", 3)
        );
        assert!(e.message.contains("missing value `()`"), "{e}");
        assert!(
            e.message.contains("in `let x = decimal(t.pagar.harga);`"),
            "{e}"
        );

        let e = h
            .call(&CallContext::default(), &s, "g", (table.clone(),))
            .unwrap_err();
        assert_eq!(e.location.line, 7, "{e}");
        assert!(e.message.contains("in `t.pagar.indeks * 2`"), "{e}");

        let e = h
            .call(&CallContext::default(), &s, "h", (table,))
            .unwrap_err();
        assert_eq!(
            (e.location.file.as_str(), e.location.line),
            ("lib/angka.rhai", 2)
        );
        assert!(e.message.contains("in `decimal(t[k].harga)`"), "{e}");
    }

    #[test]
    fn undeclared_variables_are_rejected() {
        let h = host(&[]);
        let d = h.compile("p/v.rhai", "fn f() { y + 1 }").err().unwrap();
        assert_eq!(
            (d.file.as_str(), d.line, d.column),
            ("p/v.rhai", 1, 10),
            "{d}"
        );
        assert!(d.message.contains('y'), "{d}");
    }

    #[test]
    fn self_importing_library_fails_cleanly() {
        let h = host(&[("loop", "import \"loop\" as l;\nfn f() { 1 }")]);
        assert_eq!(h.check_libs().len(), 1);
    }

    #[test]
    fn shipped_definitions_match_the_engine() {
        let shipped = include_str!("../../host-api/definitions/pintu.d.rhai");
        assert_eq!(
            shipped,
            definitions(),
            "run `pintu definitions > host-api/definitions/pintu.d.rhai`"
        );
    }

    #[test]
    fn every_api_function_is_documented_for_rule_authors() {
        let doc = include_str!("../../host-api/SCRIPT_API.md");
        for f in api::FUNCTIONS {
            assert!(
                doc.contains(&format!("`{f}(")),
                "`{f}` is not documented in SCRIPT_API.md"
            );
        }
    }
}
