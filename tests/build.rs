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
