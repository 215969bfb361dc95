//! `cargo run -p vectors` writes `docs/vectors/*.json`; `cargo run -p vectors -- --check`
//! compares them byte for byte instead and exits 1 on any difference.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/vectors");
    let check = std::env::args().skip(1).any(|a| a == "--check");
    let mut stale = Vec::new();
    for f in vectors::families() {
        let path = dir.join(format!("{}.json", f.name));
        let text = f.render();
        if check {
            if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                stale.push(path.display().to_string());
            }
        } else if let Err(e) =
            std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, text))
        {
            eprintln!("error: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    if !stale.is_empty() {
        eprintln!(
            "error: {} differ from the code; run `cargo run -p vectors` and commit them",
            stale.join(", ")
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
