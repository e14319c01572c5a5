//! Compiles the C workloads with gcc into OUT_DIR and tells the crate where
//! they are (`SPANLET_WORKLOAD_C_MUTEX`, `SPANLET_WORKLOAD_C_CONDVAR`,
//! `SPANLET_WORKLOAD_C_FUTEX_OPS`, `SPANLET_WORKLOAD_C_PINGPONG`, `SPANLET_WORKLOAD_C_LIFECYCLE`), and
//! where the Python workload lives (`SPANLET_WORKLOAD_PY_LOCK`), so that
//! tests run the programs whatever the working directory.

use std::env;
use std::path::PathBuf;
use std::process::Command;

/// (source in workloads/, env var naming the built program)
const C_WORKLOADS: &[(&str, &str)] = &[
    ("c_mutex", "SPANLET_WORKLOAD_C_MUTEX"),
    ("c_condvar", "SPANLET_WORKLOAD_C_CONDVAR"),
    ("c_futex_ops", "SPANLET_WORKLOAD_C_FUTEX_OPS"),
    ("c_pingpong", "SPANLET_WORKLOAD_C_PINGPONG"),
    ("c_lifecycle", "SPANLET_WORKLOAD_C_LIFECYCLE"),
];

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let workloads = manifest_dir.join("workloads");

    for (name, var) in C_WORKLOADS {
        let src = workloads.join(format!("{name}.c"));
        let exe = out_dir.join(name);
        println!("cargo::rerun-if-changed={}", src.display());
        // -g: the tests' failure messages are easier to follow in gdb, and
        // spanlet may symbolize addresses. -O2: realistic code for glibc's
        // inline lock paths.
        let status = Command::new("gcc")
            .args(["-O2", "-g", "-pthread", "-Wall", "-Wextra", "-I"])
            .arg(&workloads)
            .arg("-o")
            .arg(&exe)
            .arg(&src)
            .status()
            .unwrap_or_else(|e| panic!("cannot run gcc to build {}: {e}", src.display()));
        assert!(
            status.success(),
            "gcc failed to build {} ({status})",
            src.display()
        );
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

/// `c_thread_ctx` (`SPANLET_WORKLOAD_C_THREAD_CTX`), whose thread context
/// lives in a shared library of its own, `libotelctx.so`, built with the
/// TLSDESC dialect and found through an rpath.
fn thread_ctx_in_a_library(workloads: &std::path::Path, out_dir: &std::path::Path) {
    let gcc = |args: &[&std::ffi::OsStr]| {
        let status = Command::new("gcc")
            .args(args)
            .status()
            .unwrap_or_else(|e| panic!("cannot run gcc: {e}"));
        assert!(status.success(), "gcc {args:?} failed ({status})");
    };
    let lib_src = workloads.join("otel_ctx_lib.c");
    let lib = out_dir.join("libotelctx.so");
    println!("cargo::rerun-if-changed={}", lib_src.display());
    gcc(&[
        "-O2".as_ref(),
        "-g".as_ref(),
        "-fPIC".as_ref(),
        "-shared".as_ref(),
        "-mtls-dialect=gnu2".as_ref(),
        "-Wall".as_ref(),
        "-Wextra".as_ref(),
        "-o".as_ref(),
        lib.as_os_str(),
        lib_src.as_os_str(),
    ]);
    let src = workloads.join("c_thread_ctx.c");
    let exe = out_dir.join("c_thread_ctx");
    println!("cargo::rerun-if-changed={}", src.display());
    let rpath = format!("-Wl,-rpath,{}", out_dir.display());
    gcc(&[
        "-O2".as_ref(),
        "-g".as_ref(),
        "-pthread".as_ref(),
        "-Wall".as_ref(),
        "-Wextra".as_ref(),
        "-I".as_ref(),
        workloads.as_os_str(),
        "-o".as_ref(),
        exe.as_os_str(),
        src.as_os_str(),
        "-L".as_ref(),
        out_dir.as_os_str(),
        "-lotelctx".as_ref(),
        rpath.as_ref(),
    ]);
    println!(
        "cargo::rustc-env=SPANLET_WORKLOAD_C_THREAD_CTX={}",
        exe.display()
    );

    // The same writer with initial-exec TLS, for dlopen (`c_dlopen_ctx`).
    let lib_ie = out_dir.join("libotelctx_ie.so");
    gcc(&[
        "-O2".as_ref(),
        "-g".as_ref(),
        "-fPIC".as_ref(),
        "-shared".as_ref(),
        "-ftls-model=initial-exec".as_ref(),
        "-o".as_ref(),
        lib_ie.as_os_str(),
        lib_src.as_os_str(),
    ]);
    let src = workloads.join("c_dlopen_ctx.c");
    let exe = out_dir.join("c_dlopen_ctx");
    println!("cargo::rerun-if-changed={}", src.display());
    gcc(&[
        "-O2".as_ref(),
        "-g".as_ref(),
        "-pthread".as_ref(),
        "-Wall".as_ref(),
        "-Wextra".as_ref(),
        "-I".as_ref(),
        workloads.as_os_str(),
        "-o".as_ref(),
        exe.as_os_str(),
        src.as_os_str(),
        "-ldl".as_ref(),
    ]);
    println!(
        "cargo::rustc-env=SPANLET_WORKLOAD_C_DLOPEN_CTX={}",
        exe.display()
    );
    println!(
        "cargo::rustc-env=SPANLET_LIB_OTELCTX_IE={}",
        lib_ie.display()
    );
}
