//! The README's example is a real example file: it cannot rot.

#[test]
fn the_readme_shows_the_xor_example_unchanged() {
    let readme = include_str!("../../README.md");
    let example = include_str!("../examples/xor_disk.rs");
    assert!(
        readme.contains(example),
        "README.md must show tcmu-target/examples/xor_disk.rs verbatim"
    );
}
