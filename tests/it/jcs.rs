//! RFC 8785 vectors (tests/fixtures/jcs, from cyberphone/json-canonicalization).

use std::path::Path;

use engine::ids::canonical_json;

#[test]
fn rfc8785_vectors_canonicalize_byte_for_byte() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/jcs");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir.join("input")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap();
        let input: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let expected = std::fs::read(dir.join("output").join(name)).unwrap();
        let got = canonical_json(&input).unwrap();
        assert_eq!(got.as_bytes(), expected.as_slice(), "{}", path.display());
        checked += 1;
    }
    assert_eq!(checked, 4, "all four vector files were checked");
}

#[test]
fn job_id_of_normalized_hello_world_params_is_offline_computable() {
    // {"n":1000} normalizes to {"fail_every":0,"message":"hello","n":1000}.
    let registry = controllers::registry(&services::Services::local("data"));
    let controller = registry.controller("hello_world").unwrap();
    let params = controller.validate(serde_json::json!({"n": 1000})).unwrap();
    assert_eq!(
        canonical_json(&params).unwrap(),
        r#"{"fail_every":0,"message":"hello","n":1000}"#
    );
    let id = engine::ids::job_id("hello_world", 1, &params).unwrap();
    use sha2_free::sha256_hex;
    assert_eq!(
        id.as_str(),
        sha256_hex(br#"{"job_type":"hello_world","job_version":1,"params":{"fail_every":0,"message":"hello","n":1000}}"#)
    );
}

/// The digest via the `sha256sum` tool, so the test does not reuse the code under test.
mod sha2_free {
    pub fn sha256_hex(bytes: &[u8]) -> String {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut child = Command::new("sha256sum")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("sha256sum");
        child.stdin.take().unwrap().write_all(bytes).unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned()
    }
}
