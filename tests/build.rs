//! Compiles the C workloads with gcc into OUT_DIR and tells the crate where
//! they are (`SPANLET_WORKLOAD_C_MUTEX`, `SPANLET_WORKLOAD_C_CONDVAR`,
//! `SPANLET_WORKLOAD_C_FUTEX_OPS`, `SPANLET_WORKLOAD_C_PINGPONG`,
//! `SPANLET_WORKLOAD_C_LIFECYCLE`, `SPANLET_WORKLOAD_C_KERNEL_LOCKS`,
//! `SPANLET_WORKLOAD_C_SOCKET_PAIR`, and the thread-context ones below), and
//! where the Python scripts live (`SPANLET_WORKLOAD_PY_LOCK`,
//! `SPANLET_TLS_PROXY`, `SPANLET_K8S_APISERVER`), so that tests run the programs whatever the
//! working directory.

use std::env;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// (source in workloads/, env var naming the built program)
const C_WORKLOADS: &[(&str, &str)] = &[
    ("c_mutex", "SPANLET_WORKLOAD_C_MUTEX"),
    ("c_condvar", "SPANLET_WORKLOAD_C_CONDVAR"),
    ("c_futex_ops", "SPANLET_WORKLOAD_C_FUTEX_OPS"),
    ("c_pingpong", "SPANLET_WORKLOAD_C_PINGPONG"),
    ("c_lifecycle", "SPANLET_WORKLOAD_C_LIFECYCLE"),
    ("c_kernel_locks", "SPANLET_WORKLOAD_C_KERNEL_LOCKS"),
    ("c_socket_pair", "SPANLET_WORKLOAD_C_SOCKET_PAIR"),
];

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let workloads = manifest_dir.join("workloads");

    for (name, var) in C_WORKLOADS {
        let exe = program(&workloads, &out_dir, name, &[]);
        println!("cargo::rustc-env={var}={}", exe.display());
    }
    thread_ctx_in_a_library(&workloads, &out_dir);

    println!(
        "cargo::rerun-if-changed={}",
        workloads.join("workload.h").display()
    );
    let proxy = workloads.join("tls_proxy.py");
    println!("cargo::rerun-if-changed={}", proxy.display());
    println!("cargo::rustc-env=SPANLET_TLS_PROXY={}", proxy.display());
    let apiserver = workloads.join("k8s_apiserver.py");
    println!("cargo::rerun-if-changed={}", apiserver.display());
    println!(
        "cargo::rustc-env=SPANLET_K8S_APISERVER={}",
        apiserver.display()
    );
    let py = workloads.join("py_lock.py");
    println!("cargo::rerun-if-changed={}", py.display());
    println!("cargo::rustc-env=SPANLET_WORKLOAD_PY_LOCK={}", py.display());
    // OTEP 4947 requires the thread-context TLS symbol in .dynsym; Rust
    // executables export nothing unless asked, as a user of the writer
    // crate has to ask too.
    println!(
        "cargo::rustc-link-arg-bin=rust_thread_ctx=-Wl,--export-dynamic-symbol=otel_thread_ctx_v1"
    );
    println!("cargo::rerun-if-changed=build.rs");
}

fn gcc(args: &[&OsStr]) {
    let status = Command::new("gcc")
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("cannot run gcc: {e}"));
    assert!(status.success(), "gcc {args:?} failed ({status})");
}

/// Builds `workloads/NAME.c` into `OUT_DIR/NAME`, with `link` after the
/// source (libraries, linker flags). -g: the tests' failure messages are
/// easier to follow in gdb, and spanlet may symbolize addresses. -O2:
/// realistic code for glibc's inline lock paths.
fn program(workloads: &Path, out_dir: &Path, name: &str, link: &[&OsStr]) -> PathBuf {
    let src = workloads.join(format!("{name}.c"));
    let exe = out_dir.join(name);
    println!("cargo::rerun-if-changed={}", src.display());
    let mut args: Vec<&OsStr> = ["-O2", "-g", "-pthread", "-Wall", "-Wextra", "-I"]
        .iter()
        .map(OsStr::new)
        .collect();
    args.extend([
        workloads.as_os_str(),
        "-o".as_ref(),
        exe.as_os_str(),
        src.as_os_str(),
    ]);
    args.extend_from_slice(link);
    gcc(&args);
    exe
}

/// Builds the OTEP 4947 writer `workloads/otel_ctx_lib.c` as a shared
/// library with the given TLS flag.
fn writer_library(workloads: &Path, lib: &Path, tls: &str) {
    let src = workloads.join("otel_ctx_lib.c");
    println!("cargo::rerun-if-changed={}", src.display());
    gcc(&[
        "-O2".as_ref(),
        "-g".as_ref(),
        "-fPIC".as_ref(),
        "-shared".as_ref(),
        tls.as_ref(),
        "-Wall".as_ref(),
        "-Wextra".as_ref(),
        "-o".as_ref(),
        lib.as_os_str(),
        src.as_os_str(),
    ]);
}

/// `c_thread_ctx` (`SPANLET_WORKLOAD_C_THREAD_CTX`), whose thread context
/// lives in a shared library of its own, `libotelctx.so`, built with the
/// TLSDESC dialect and found through an rpath; and `c_dlopen_ctx`
/// (`SPANLET_WORKLOAD_C_DLOPEN_CTX`), which dlopens an initial-exec build
/// of the same library (`SPANLET_LIB_OTELCTX_IE`) after it started.
fn thread_ctx_in_a_library(workloads: &Path, out_dir: &Path) {
    writer_library(
        workloads,
        &out_dir.join("libotelctx.so"),
        "-mtls-dialect=gnu2",
    );
    let rpath = format!("-Wl,-rpath,{}", out_dir.display());
    let exe = program(
        workloads,
        out_dir,
        "c_thread_ctx",
        &[
            "-L".as_ref(),
            out_dir.as_os_str(),
            "-lotelctx".as_ref(),
            rpath.as_ref(),
        ],
    );
    println!(
        "cargo::rustc-env=SPANLET_WORKLOAD_C_THREAD_CTX={}",
        exe.display()
    );

    let lib_ie = out_dir.join("libotelctx_ie.so");
    writer_library(workloads, &lib_ie, "-ftls-model=initial-exec");
    let exe = program(workloads, out_dir, "c_dlopen_ctx", &["-ldl".as_ref()]);
    println!(
        "cargo::rustc-env=SPANLET_WORKLOAD_C_DLOPEN_CTX={}",
        exe.display()
    );
    println!(
        "cargo::rustc-env=SPANLET_LIB_OTELCTX_IE={}",
        lib_ie.display()
    );
}
