//! ONNX Runtime: loading the shared library once, and the execution provider (CPU or CUDA) that
//! every session of a run uses.

use std::path::PathBuf;
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;

use super::ModelError;

/// Where a model runs. `Cuda` fails loudly if the CUDA execution provider cannot register.
/// Written as `cpu`, `cuda` or `cuda:N` on the command line and in pipeline files alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Device {
    #[default]
    Cpu,
    Cuda(i32),
}

impl std::str::FromStr for Device {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            other => match other.strip_prefix("cuda:").map(str::parse) {
                Some(Ok(id)) => Ok(Device::Cuda(id)),
                _ => Err(format!(
                    "unknown device {other:?}: expected cpu, cuda or cuda:N"
                )),
            },
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(id) => write!(f, "cuda:{id}"),
        }
    }
}

impl TryFrom<String> for Device {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Device> for String {
    fn from(d: Device) -> String {
        d.to_string()
    }
}

impl schemars::JsonSchema for Device {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Device".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^(cpu|cuda|cuda:[0-9]+)$",
            "description": "cpu, cuda or cuda:N"
        })
    }
}

/// Threading and placement of ONNX Runtime sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuntimeOptions {
    pub device: Device,
    /// Intra-op threads per session; 0 = one per core.
    pub intra_threads: usize,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            device: Device::Cpu,
            intra_threads: 0,
        }
    }
}

static ENVIRONMENT: OnceLock<Result<Environment, String>> = OnceLock::new();

/// The library path: `ORT_DYLIB_PATH`, else `<deps>/ort/libonnxruntime.so`, resolved to the file
/// itself. ONNX Runtime finds its provider libraries (`libonnxruntime_providers_shared.so`, the
/// CUDA provider) beside the path it was loaded from, and glibc reports a symlink's folder, not
/// its target's: `.deps/ort/libonnxruntime.so` is a symlink into the wheel's `capi/`, where the
/// providers are (GPU-READINESS risk 3).
/// With `ACTPRM_GPU=1 ./setup.sh`, `<deps>/ort-gpu` holds the CUDA build and is preferred.
pub fn library_path() -> PathBuf {
    let given = std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .or_else(|| gpu_build(&super::deps_dir().join("ort-gpu")))
        .unwrap_or_else(|| super::deps_dir().join("ort/libonnxruntime.so"));
    resolved(given)
}

/// The library of an onnxruntime-gpu wheel unpacked in `root` (`onnxruntime/capi/`).
fn gpu_build(root: &std::path::Path) -> Option<PathBuf> {
    let capi = root.join("onnxruntime/capi");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&capi)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libonnxruntime.so."))
        })
        .collect();
    found.sort();
    found.pop()
}

/// Loads the CUDA 13 and cuDNN 9 libraries of the wheels installed beside the ONNX Runtime
/// library (`nvidia/cu13/lib`, `nvidia/cudnn/lib`: the layout of onnxruntime-gpu's `cuda` and
/// `cudnn` extras, which `ACTPRM_GPU=1 ./setup.sh` installs) by absolute path, once: the CUDA
/// provider library has no RUNPATH and would look for them on the system's search path only.
/// Folders that are not there are left to that search path (a system CUDA).
fn preload_cuda_libraries() -> Result<(), String> {
    static PRELOADED: OnceLock<Result<(), String>> = OnceLock::new();
    PRELOADED
        .get_or_init(|| {
            // a CPU build first: its answer (install onnxruntime-gpu) comes before the driver's
            use ort::ep::ExecutionProvider;
            if !ort::ep::CUDA::is_available().unwrap_or(true) {
                return Err(format!(
                    "{} is the CPU build of ONNX Runtime, without a CUDA provider: install \
                     onnxruntime-gpu with ACTPRM_GPU=1 ./setup.sh (or point ORT_DYLIB_PATH at its \
                     library)",
                    library_path().display()
                ));
            }
            cuda_driver()?;
            // <root>/onnxruntime/capi/libonnxruntime.so.X -> <root>/nvidia/...
            let library = library_path();
            let Some(root) = library.ancestors().nth(3) else {
                return Ok(());
            };
            let folder = |p: &str| Some(root.join(p)).filter(|d| d.is_dir());
            let (cuda, cudnn) = (folder("nvidia/cu13/lib"), folder("nvidia/cudnn/lib"));
            ort::ep::cuda::preload_dylibs(cuda.as_deref(), cudnn.as_deref()).map_err(|e| {
                format!(
                    "{e} (from {}); reinstall with ACTPRM_GPU=1 ./setup.sh",
                    root.join("nvidia").display()
                )
            })
        })
        .clone()
}

/// The NVIDIA driver's library, which every CUDA library needs and no wheel can install: its
/// absence is said as such, not as the first CUDA library that fails to load because of it.
pub(crate) fn cuda_driver() -> Result<(), String> {
    // SAFETY: loading the driver library runs its initialisers, as the CUDA provider would.
    unsafe { libloading::Library::new("libcuda.so.1") }
        .map(drop)
        .map_err(|e| {
            format!(
                "no CUDA driver on this machine: libcuda.so.1 (installed with the NVIDIA driver, \
                 not by setup.sh) did not load ({})",
                dlopen_reason(&e)
            )
        })
}

/// What the dynamic loader said: libloading's own message is only "dlopen failed", the loader's
/// (which library is missing) is its source.
pub(crate) fn dlopen_reason(e: &libloading::Error) -> String {
    match std::error::Error::source(e) {
        Some(reason) => reason.to_string(),
        None => e.to_string(),
    }
}

/// `path` with every symlink followed, or as given when it does not exist (the caller reports it).
fn resolved(path: PathBuf) -> PathBuf {
    std::fs::canonicalize(&path).unwrap_or(path)
}

/// The process-wide environment. `ort` panics on a missing library, so its presence is checked
/// first and reported as an install hint instead.
pub fn environment() -> Result<&'static Environment, ModelError> {
    let result = ENVIRONMENT.get_or_init(|| {
        let path = library_path();
        if !path.exists() {
            return Err(ModelError::RuntimeMissing { path }.to_string());
        }
        let builder =
            ort::init_from(&path).map_err(|e| format!("loading {}: {e}", path.display()))?;
        builder
            .with_name("actprm")
            .build()
            .map_err(|e| e.to_string())
    });
    match result {
        Ok(env) => Ok(env),
        Err(message) if message.starts_with("ONNX Runtime library not found") => {
            Err(ModelError::RuntimeMissing {
                path: library_path(),
            })
        }
        Err(message) => Err(ModelError::Ort {
            context: "initialising".into(),
            message: message.clone(),
        }),
    }
}

/// `ACTPRM_ORT_LOG=verbose|info|warning|error`: ONNX Runtime's log level for every session (the
/// GPU first-run script reads the node placements from verbose); unset: ONNX Runtime's default.
fn ort_log_level() -> Result<Option<ort::logging::LogLevel>, ModelError> {
    use ort::logging::LogLevel;
    let Ok(value) = std::env::var("ACTPRM_ORT_LOG") else {
        return Ok(None);
    };
    Ok(Some(match value.to_ascii_lowercase().as_str() {
        "verbose" => LogLevel::Verbose,
        "info" => LogLevel::Info,
        "warning" => LogLevel::Warning,
        "error" => LogLevel::Error,
        _ => {
            return Err(ModelError::Ort {
                context: "ACTPRM_ORT_LOG".into(),
                message: format!("is `{value}`; expected verbose, info, warning or error"),
            })
        }
    }))
}

/// An ONNX graph to open: a file (large backbones, external data) or bytes (our heads).
pub enum GraphSource<'a> {
    File(&'a std::path::Path),
    Memory(&'a [u8]),
}

/// Opens one session with the run's execution provider.
pub fn open_session(
    source: GraphSource<'_>,
    what: &str,
    options: &RuntimeOptions,
) -> Result<Session, ModelError> {
    let env = environment()?;
    let threads = if options.intra_threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        options.intra_threads
    };
    let mut builder = Session::builder(env)
        .map_err(ModelError::ort(format!("session for {what}")))?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(|e| ModelError::ort(format!("optimisation level for {what}"))(e.into()))?
        .with_intra_threads(threads)
        .map_err(|e| ModelError::ort(format!("threads for {what}"))(e.into()))?;
    if let Some(level) = ort_log_level()? {
        // ONNX Runtime's own logger (stderr): at verbose it lists which provider runs each node
        builder = builder
            .with_log_level(level)
            .map_err(|e| ModelError::ort(format!("log level for {what}"))(e.into()))?;
    }
    if let Device::Cuda(id) = options.device {
        let context = format!(
            "the CUDA execution provider (device {id}) for {what} could not register (--device cpu \
             runs without it)"
        );
        preload_cuda_libraries().map_err(|message| ModelError::Ort {
            context: context.clone(),
            message,
        })?;
        builder = builder
            .with_execution_providers([ort::ep::CUDA::default()
                .with_device_id(id)
                // f32 products in full f32, so CUDA scores match the CPU's (GPU-READINESS risk
                // 15), and an arena that grows by what is asked, not by doubling (risk 11)
                .with_tf32(false)
                .with_arena_extend_strategy(ort::ep::ArenaExtendStrategy::SameAsRequested)
                .build()
                .error_on_failure()])
            .map_err(|e| ModelError::Ort {
                context,
                message: ort::Error::<()>::from(e).to_string(),
            })?;
    }
    match source {
        GraphSource::File(path) => builder.commit_from_file(path),
        GraphSource::Memory(bytes) => builder.commit_from_memory(bytes),
    }
    .map_err(ModelError::ort(format!("loading {what}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_library_is_loaded_from_its_own_folder_not_a_symlinks() {
        let dir = tempfile::tempdir().expect("temp dir");
        let capi = dir.path().join("onnxruntime/capi");
        std::fs::create_dir_all(&capi).expect("capi folder");
        let real = capi.join("libonnxruntime.so.1.31.1");
        std::fs::write(&real, b"").expect("library file");
        let link = dir.path().join("libonnxruntime.so");
        std::os::unix::fs::symlink("onnxruntime/capi/libonnxruntime.so.1.31.1", &link)
            .expect("symlink");
        let loaded = resolved(link);
        assert_eq!(loaded, real.canonicalize().expect("real path"));
        assert_eq!(
            loaded.parent(),
            Some(capi.canonicalize().expect("capi").as_path())
        );
        let missing = dir.path().join("absent.so");
        assert_eq!(resolved(missing.clone()), missing);
    }
}
