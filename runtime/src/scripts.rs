//! The Rhai engine: exact decimals, sandbox limits, imports confined to `rules/lib`, and the
//! documented script API. One engine is built per release; its compiled scripts are evaluated
//! concurrently from many threads.

pub mod api;
pub mod value;

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

thread_local! {
    /// Deadline of the evaluation running on this thread; the progress callback reads it.
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

thread_local! {
    /// The office date of the evaluation running on this thread, for `today()`. `None` in
    /// fixtures that did not set one, so a rule reading the date cannot pass by luck.
    static TODAY: Cell<Option<chrono::NaiveDate>> = const { Cell::new(None) };
}

/// Runs `f` with `today()` answering `date` on this thread.
pub fn with_today<T>(date: Option<chrono::NaiveDate>, f: impl FnOnce() -> T) -> T {
    let previous = TODAY.with(|t| t.replace(date));
    let out = f();
    TODAY.with(|t| t.set(previous));
    out
}

pub(crate) fn today() -> Option<chrono::NaiveDate> {
    TODAY.with(Cell::get)
}

/// How often (in operations) the progress callback looks at the clock: reading it on every
/// operation would cost more than the script.
const CLOCK_CHECK_EVERY: u64 = 4096;

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
            if !ops.is_multiple_of(CLOCK_CHECK_EVERY) {
                return None;
            }
            let expired = DEADLINE.with(|d| d.get().is_some_and(|t| Instant::now() >= t));
            expired.then(|| Dynamic::from("wall-clock limit"))
        });
        // Scripts have no console; `print`/`debug` output goes to the server log.
        engine.on_print(|s| tracing::info!(target: "pintu::script", "{s}"));
        engine.on_debug(|s, src, pos| tracing::debug!(target: "pintu::script", "{}:{pos}: {s}", src.unwrap_or("")));
        api::register(&mut engine);
        let libs = Arc::new(LibResolver::new(libs));
        engine.set_module_resolver(SharedResolver(libs.clone()));
        Self {
            engine,
            timeout: limits.script_timeout(),
            libs,
        }
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
        })
    }

    /// Compiles every library module, so that a broken one fails the release even if nothing
    /// imports it yet.
    pub fn check_libs(&self) -> Vec<Diagnostic> {
        self.libs
            .names()
            .into_iter()
            .filter_map(|name| {
                self.libs
                    .load(&self.engine, &name, Position::NONE)
                    .err()
                    .map(|e| describe(&e, &self.libs.file_of(&name)).diagnostic())
            })
            .collect()
    }

    /// Calls `func` in `script` under the sandbox limits and the wall-clock deadline.
    pub fn call(
        &self,
        script: &Script,
        func: &str,
        args: impl FuncArgs,
    ) -> Result<Dynamic, ScriptError> {
        let mut scope = Scope::new();
        DEADLINE.with(|d| d.set(Some(Instant::now() + self.timeout)));
        let result = self.engine.call_fn_with_options::<Dynamic>(
            CallFnOptions::new().eval_ast(true),
            &mut scope,
            &script.ast,
            func,
            args,
        );
        DEADLINE.with(|d| d.set(None));
        result.map_err(|e| describe(&e, &script.file))
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

/// The script API as a Rhai definition file, for editors' completion and hover help. The copy
/// in `host-api/definitions/pintu.d.rhai` is kept equal to this by a test.
pub fn definitions() -> String {
    let host = ScriptHost::new(&Limits::default(), BTreeMap::new());
    let text = host
        .engine()
        .definitions()
        .include_standard_packages(false)
        .static_module();
    format!("// Generated by `pintu definitions`; do not edit.\n{text}")
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
/// Modules are compiled on first use and cached for the life of the release.
struct LibResolver {
    sources: BTreeMap<String, (String, String)>,
    cache: Mutex<HashMap<String, Shared<Module>>>,
}

impl LibResolver {
    fn new(sources: BTreeMap<String, (String, String)>) -> Self {
        Self {
            sources,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn names(&self) -> Vec<String> {
        self.sources.keys().cloned().collect()
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
        if let Some(m) = self.cache.lock().ok().and_then(|c| c.get(name).cloned()) {
            return Ok(m);
        }
        let (file, source) = self
            .sources
            .get(name)
            .ok_or_else(|| Box::new(EvalAltResult::ErrorModuleNotFound(name.to_owned(), pos)))?;
        let depth = LOAD_DEPTH.with(|d| {
            d.set(d.get() + 1);
            d.get()
        });
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
        LOAD_DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
        let module: Shared<Module> = result
            .map_err(|e| Box::new(EvalAltResult::ErrorInModule(name.to_owned(), e, pos)))?
            .into();
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(name.to_owned(), module.clone());
        }
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
        let out = h.call(&s, "f", ()).unwrap().cast::<Decimal>();
        assert_eq!(out, Decimal::from_str_exact("0.3").unwrap());
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
        assert_eq!(h.call(&s, "f", (21_i64,)).unwrap().as_int().unwrap(), 42);
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
        let e = h.call(&s, "f", ()).unwrap_err();
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
        let e = h.call(&s, "f", ()).unwrap_err();
        assert_eq!(e.location.file, "p/levy.rhai");
        assert_eq!(e.location.line, 3, "{e}");
    }

    #[test]
    fn infinite_loop_stops_at_a_limit() {
        let h = host(&[]);
        let s = h.compile("p/v.rhai", "fn f() { loop { } }").unwrap();
        let e = h.call(&s, "f", ()).unwrap_err();
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
        let e = h.call(&s, "f", ()).unwrap_err();
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
            h.call(&s, "deep", (0_i64,)).unwrap_err().kind,
            ScriptErrorKind::Limit
        );
        assert_eq!(
            h.call(&s, "big", ()).unwrap_err().kind,
            ScriptErrorKind::Limit
        );
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
