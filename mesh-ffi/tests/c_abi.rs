//! The C ABI from C: the committed header compiles as C99 and C++ with every warning an error,
//! a program links the static library, and the scenario list (tests/c/) runs against real
//! loopback meshes under AddressSanitizer and LeakSanitizer.
//!
//! Needs a C compiler (`cc`, or `$CC`) and a C++ compiler (`c++`, or `$CXX`); both ship with
//! every Debian that builds Rust.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

const STRICT: &[&str] = &["-Wall", "-Wextra", "-Werror", "-pedantic"];

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where cargo put `libmesh_ffi.{so,a}` for this test run.
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // `cargo test` builds the cdylib and staticlib into `deps/`, beside the test binary.
    let dir = exe.parent().unwrap().to_path_buf();
    assert!(
        dir.join("libmesh_ffi.so").exists() && dir.join("libmesh_ffi.a").exists(),
        "libmesh_ffi.so/.a not found in {}; `cargo test -p mesh-ffi` builds them",
        dir.display()
    );
    dir
}

fn compiler(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}

/// Runs a command (under coreutils `timeout`, so a hang fails the test instead of CI) and
/// fails with its output unless it succeeds; returns stdout.
fn run(command: Command, limit_s: u32) -> String {
    let shown = format!("{command:?}");
    let program = command.get_program().to_owned();
    let mut wrapped = Command::new("timeout");
    wrapped
        .arg("--kill-after=5")
        .arg(limit_s.to_string())
        .arg(program);
    wrapped.args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => wrapped.env(key, value),
            None => wrapped.env_remove(key),
        };
    }
    let output = wrapped.output().unwrap_or_else(|e| panic!("{shown}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{shown} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    stdout
}

fn include_dir() -> String {
    format!("-I{}", crate_dir().join("include").display())
}

#[test]
fn header_compiles_as_c99_and_cpp_without_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let source = "#include \"mesh.h\"\nint main(void) { return mesh_version() == 0; }\n";
    for (compiler, file, standard) in [
        (compiler("CC", "cc"), "check.c", "-std=c99"),
        (compiler("CXX", "c++"), "check.cpp", "-std=c++11"),
    ] {
        let path = dir.path().join(file);
        std::fs::write(&path, source).unwrap();
        let mut command = Command::new(compiler);
        command
            .args([standard, &include_dir()])
            .args(STRICT)
            .arg("-c")
            .arg(&path)
            .arg("-o")
            .arg(dir.path().join(format!("{file}.o")));
        run(command, 120);
    }
}

#[test]
fn a_program_links_the_static_library() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("static.c");
    std::fs::write(
        &source,
        "#include <stdio.h>\n#include <string.h>\n#include \"mesh.h\"\n\
         int main(void) {\n  mesh_error *e = NULL;\n  mesh_mesh *m = NULL;\n\
           if (mesh_mesh_new(\"identiti: {}\", 0, &m, &e) != MESH_ERR_CONFIG) return 1;\n\
           if (strstr(mesh_error_message(e), \"identiti\") == NULL) return 2;\n\
           mesh_error_free(e);\n  printf(\"%s\\n\", mesh_version());\n  return 0;\n}\n",
    )
    .unwrap();
    let exe = dir.path().join("static");
    let mut command = Command::new(compiler("CC", "cc"));
    command
        .args(["-std=c99", &include_dir()])
        .args(STRICT)
        .arg(&source)
        .arg(lib_dir().join("libmesh_ffi.a"))
        // What `rustc --print native-static-libs` lists for this crate on Linux.
        .args([
            "-lgcc_s",
            "-lutil",
            "-lrt",
            "-lpthread",
            "-lm",
            "-ldl",
            "-lc",
        ])
        .arg("-o")
        .arg(&exe);
    run(command, 300);
    let out = run(Command::new(&exe), 60);
    assert_eq!(out.trim(), env!("CARGO_PKG_VERSION"));
}

fn build_scenarios(out: &Path) {
    let c = crate_dir().join("tests/c");
    let lib = lib_dir();
    let mut command = Command::new(compiler("CC", "cc"));
    command
        .args([
            "-std=c99",
            "-g",
            "-fsanitize=address",
            "-fno-omit-frame-pointer",
        ])
        .arg(include_dir())
        .args(STRICT)
        .args(
            [
                "scenarios.c",
                "app.c",
                "harness.c",
                "invalid.c",
                "streaming.c",
            ]
            .map(|f| c.join(f)),
        )
        .arg(format!("-L{}", lib.display()))
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .args(["-lmesh_ffi", "-lpthread"])
        .arg("-o")
        .arg(out);
    run(command, 300);
}

#[test]
fn scenarios_run_from_c_under_address_and_leak_sanitizers() {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("scenarios");
    build_scenarios(&exe);
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let mut command = Command::new(&exe);
    command
        .arg(&work)
        // cargo points LD_LIBRARY_PATH at target/debug, whose libmesh_ffi.so is only refreshed
        // by `cargo build`; the binary's rpath names the one this test run built.
        .env_remove("LD_LIBRARY_PATH")
        .env(
            "ASAN_OPTIONS",
            "detect_leaks=1:abort_on_error=0:halt_on_error=1:fast_unwind_on_malloc=0",
        )
        .env(
            "LSAN_OPTIONS",
            format!(
                "suppressions={}",
                crate_dir().join("tests/c/lsan.supp").display()
            ),
        );
    let out = run(command, 300);
    println!("{out}");
    assert!(out.contains("0 failed"), "{out}");
}
