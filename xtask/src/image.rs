//! `cargo xtask image`: spanlet's OCI image (deploy/Containerfile), built with
//! buildah, which needs no container engine, and proved to work without a
//! container runtime by running the binary out of the image's mounted root.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context, Result, bail, ensure};

use crate::util::{cargo, run, stdout_of, target_dir, workspace_root};

/// spanlet is linked statically against musl so that it runs `FROM scratch`.
pub const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";
/// The workspace's version (xtask shares it): the image's default tag and
/// label, and what `spanlet --version` must print.
const VERSION: &str = env!("CARGO_PKG_VERSION");
const SOURCE: &str = env!("CARGO_PKG_REPOSITORY");

#[derive(clap::Args, Default)]
pub struct Args {
    /// Name and tag of the image [default: localhost/spanlet:<workspace
    /// version>].
    #[arg(long, value_name = "NAME:TAG")]
    tag: Option<String>,
}

pub fn task(args: &Args) -> Result<()> {
    let started = Instant::now();
    let tag = args
        .tag
        .clone()
        .unwrap_or_else(|| format!("localhost/spanlet:{VERSION}"));
    let bin = build().context("image step `cargo build` for musl failed")?;
    check_static(&bin)?;
    let built = started.elapsed();
    let previous = image_id(&tag);
    bud(&bin, &tag).context("image step `buildah bud` failed")?;
    remove_previous(previous, &tag);
    check_config(&tag).context("the image's configuration is not as deploy/Containerfile says")?;
    smoke_test(&tag).context("the image's spanlet does not run")?;
    let (id, size) = id_and_size(&tag)?;
    eprintln!(
        "image: {tag} id {id} size {size} (musl build {:.0?}, total {:.0?})",
        built,
        started.elapsed()
    );
    Ok(())
}

/// The release build of `spanlet` for musl. agent/build.rs builds the eBPF
/// object with the nightly toolchain as for any host target. `ring` compiles
/// C, which must be compiled for musl too: Debian's musl-gcc wrapper does.
/// cc-rs finds it on PATH by itself today; naming it makes a missing
/// musl-tools an error rather than a quiet fallback to another compiler.
fn build() -> Result<PathBuf> {
    let mut cmd = cargo();
    cmd.args(["build", "--release", "--target", MUSL_TARGET])
        .args(["-p", "agent", "--bin", "spanlet"]);
    let cc_var = format!("CC_{}", MUSL_TARGET.replace('-', "_"));
    if std::env::var_os(&cc_var).is_none() {
        cmd.env(&cc_var, "musl-gcc");
    }
    run(&mut cmd)?;
    Ok(target_dir()
        .join(MUSL_TARGET)
        .join("release")
        .join("spanlet"))
}

/// A `scratch` image has no loader or libc: anything dynamic would not start.
fn check_static(bin: &Path) -> Result<()> {
    let elf = fs::read(bin).with_context(|| format!("reading {}", bin.display()))?;
    let deps = crate::elf::dynamic_dependencies(&elf)
        .with_context(|| format!("reading {}'s ELF headers", bin.display()))?;
    if !deps.is_empty() {
        bail!(
            "{} is not statically linked: {}",
            bin.display(),
            deps.join(", ")
        );
    }
    eprintln!("image: {} is statically linked", bin.display());
    Ok(())
}

/// The build context is a fresh directory holding only the binary, so no
/// stray file of the workspace can end up in the image. The copy loses its
/// DWARF (the release profile's line tables, about 54 of its 65 MB)
/// but keeps its symbol table, so backtraces still name functions.
fn bud(bin: &Path, tag: &str) -> Result<()> {
    let context = tempfile::Builder::new()
        .prefix("spanlet-image-")
        .tempdir()
        .context("creating the build context directory")?;
    let copy = context.path().join("spanlet");
    fs::copy(bin, &copy).with_context(|| format!("copying {}", bin.display()))?;
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o755))?;
    run(Command::new("strip").arg("--strip-debug").arg(&copy))?;
    run(Command::new("buildah")
        .args(["bud", "--layers=false", "--format", "oci", "-f"])
        .arg(workspace_root().join("deploy/Containerfile"))
        .args(["--build-arg", &format!("VERSION={VERSION}")])
        .args(["--build-arg", &format!("SOURCE={SOURCE}")])
        .args(["-t", tag])
        .arg(context.path()))
}

/// The image's entrypoint and labels, from its OCI configuration (buildah
/// 1.28's --format templates have no `json`, so the whole inspection is read).
fn check_config(tag: &str) -> Result<()> {
    let json = stdout_of(Command::new("buildah").args(["inspect", "--type", "image", tag]))?;
    let inspection: serde_json::Value =
        serde_json::from_str(&json).context("parsing `buildah inspect`'s output")?;
    let config = &inspection["OCIv1"]["config"];
    let entrypoint = &config["Entrypoint"];
    ensure!(
        *entrypoint == serde_json::json!(["/spanlet", "run"]),
        "entrypoint is {entrypoint}, not [\"/spanlet\", \"run\"]"
    );
    for (label, expected) in [
        ("org.opencontainers.image.version", VERSION),
        ("org.opencontainers.image.source", SOURCE),
    ] {
        let value = &config["Labels"][label];
        ensure!(
            value.as_str() == Some(expected),
            "label {label} is {value}, not {expected:?}"
        );
    }
    Ok(())
}

/// `buildah from` + `buildah mount` give the image's root filesystem as a
/// directory; its static binary runs from there like on any host.
fn smoke_test(tag: &str) -> Result<()> {
    let name = stdout_of(Command::new("buildah").args(["from", "--pull=never", tag]))?
        .trim()
        .to_owned();
    let container = WorkingContainer(name);
    let root = stdout_of(Command::new("buildah").args(["mount", &container.0]))?;
    let bin = Path::new(root.trim()).join("spanlet");

    let version = stdout_of(Command::new(&bin).arg("--version"))?;
    let expected = format!("spanlet {VERSION}");
    ensure!(
        version.trim() == expected,
        "`spanlet --version` printed {version:?}, not {expected:?}"
    );
    eprintln!(
        "image: `/spanlet --version` from the image: {}",
        version.trim()
    );
    let help = stdout_of(Command::new(&bin).args(["run", "--help"]))?;
    ensure!(
        help.contains("Usage: spanlet run"),
        "`spanlet run --help` printed no usage line:\n{help}"
    );
    ensure!(
        help.contains("--all"),
        "`spanlet run --help` lists no --all, which deploy/kubernetes/spanlet.yaml passes"
    );
    eprintln!("image: `/spanlet run --help` from the image: usage as expected");
    run(Command::new("buildah").args(["umount", &container.0]))?;
    Ok(())
}

/// `buildah rm` on drop, so a failed check leaves no container behind
/// (it unmounts too).
struct WorkingContainer(String);

impl Drop for WorkingContainer {
    fn drop(&mut self) {
        let removed = Command::new("buildah")
            .args(["rm", &self.0])
            .output()
            .is_ok_and(|out| out.status.success());
        if !removed {
            eprintln!("warning: could not remove buildah container {}", self.0);
        }
    }
}

/// The id of the image `tag` names now, if any.
fn image_id(tag: &str) -> Option<String> {
    let out = stdout_of(Command::new("buildah").args([
        "images",
        "--noheading",
        "--no-trunc",
        "--format",
        "{{.ID}}",
        tag,
    ]))
    .ok()?;
    out.lines().next().map(|id| id.trim().to_owned())
}

/// A rebuild moves the tag to the new image; the old one would be left
/// dangling, one more per run. Best effort: an image still used by a
/// container or another tag stays.
fn remove_previous(previous: Option<String>, tag: &str) {
    let Some(previous) = previous else { return };
    if image_id(tag).as_ref() == Some(&previous) {
        return;
    }
    let removed = Command::new("buildah")
        .args(["rmi", &previous])
        .output()
        .is_ok_and(|out| out.status.success());
    if removed {
        eprintln!("image: removed the previous {tag}, {previous}");
    }
}

/// `buildah images` pads its columns with spaces, whatever the format says.
fn id_and_size(tag: &str) -> Result<(String, String)> {
    let out = stdout_of(Command::new("buildah").args([
        "images",
        "--noheading",
        "--no-trunc",
        "--format",
        "{{.ID}} {{.Size}}",
        tag,
    ]))?;
    let line = out.lines().next().unwrap_or_default().trim();
    match line.split_once(' ') {
        Some((id, size)) => Ok((id.to_owned(), size.trim().to_owned())),
        None => bail!("unexpected `buildah images` output: {out:?}"),
    }
}
