//! The committed vectors are exactly what the code generates today (byte for byte).

use std::path::PathBuf;

#[test]
fn committed_vectors_regenerate_byte_for_byte() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/vectors");
    let families = vectors::families();
    for f in &families {
        let path = dir.join(format!("{}.json", f.name));
        let committed = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        assert!(
            committed == f.render(),
            "{} differs from what the code generates: run `cargo run -p vectors`, review the \
             diff and commit it",
            path.display()
        );
    }
    // No stale file of a family that no longer exists.
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".json"))
        .collect();
    on_disk.sort();
    let mut want: Vec<String> = families
        .iter()
        .map(|f| format!("{}.json", f.name))
        .collect();
    want.sort();
    assert_eq!(on_disk, want);
}

#[test]
fn every_vector_has_inputs_intermediate_values_and_outputs() {
    for f in vectors::families() {
        assert!(!f.vectors.is_empty(), "{}", f.name);
        for v in &f.vectors {
            for part in ["name", "inputs", "intermediate", "outputs"] {
                assert!(
                    v.get(part).is_some(),
                    "{}: a vector lacks {part}: {v}",
                    f.name
                );
            }
        }
    }
}
