//! Dumps that cannot give the right state are refused with a message that says why, before anything is
//! ingested.

mod common;

use alloy_primitives::B256;
use common::*;
use ec_import::{import, ImportError, Source};

fn import_geth_text(text: &str) -> (Result<ec_import::ImportSummary, ImportError>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("dump.jsonl");
    std::fs::write(&path, text).expect("write");
    let store = open_store(&dir.path().join("db"));
    let result = import(Source::GethDump(path), &store, dir.path());
    (result, dir)
}

fn geth_lines(state: &[Account]) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("dump.jsonl");
    write_geth_dump(&path, state, B256::ZERO);
    std::fs::read_to_string(path).expect("read").lines().map(str::to_string).collect()
}

/// `geth snapshot dump --nocode` and `--nostorage` leave out a field the state root needs.
#[test]
fn a_dump_without_code_or_storage_is_refused() {
    for (field, flag) in [("code", "--nocode"), ("storage", "--nostorage")] {
        let lines = geth_lines(&tiny_state());
        let text: String = lines.iter().map(|l| remove_field(l, field) + "\n").collect();
        let (result, _d) = import_geth_text(&text);
        match result {
            Err(ImportError::BadAccount { reason, .. }) => assert!(reason.contains(flag), "{reason}"),
            other => panic!("without {field}: {other:?}"),
        }
    }
}

#[test]
fn an_unsorted_geth_dump_is_refused() {
    let mut lines = geth_lines(&tiny_state());
    lines.swap(1, 3);
    let (result, _d) = import_geth_text(&(lines.join("\n") + "\n"));
    assert!(matches!(result, Err(ImportError::Unsorted { table: "accounts", .. })), "{result:?}");
}

#[test]
fn a_slot_value_that_is_not_rlp_is_refused_with_its_position() {
    let key = B256::repeat_byte(1);
    let text = format!(
        "{{\"root\":\"{key}\"}}\n{{\"balance\":\"1\",\"nonce\":0,\"storage\":{{\"{key}\":\"8201\"}},\"key\":\"{key}\"}}\n"
    );
    let (result, _d) = import_geth_text(&text);
    match result {
        Err(e @ ImportError::Json { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("RLP") && msg.contains("line 2"), "{msg}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn truncated_json_is_refused() {
    let lines = geth_lines(&tiny_state());
    let text = lines.join("\n");
    let (result, _d) = import_geth_text(&text[..text.len() - 20]);
    assert!(matches!(result, Err(ImportError::Json { .. })), "{result:?}");
}

/// Removes `"name":<value>` from a one-line JSON object written by the helpers (values without commas
/// except inside the storage object, which is matched to its closing brace).
fn remove_field(line: &str, name: &str) -> String {
    let tag = format!(",\"{name}\":");
    let Some(start) = line.find(&tag) else { return line.to_string() };
    let rest = &line[start + tag.len()..];
    let end = if rest.starts_with('{') {
        rest.find('}').map(|i| i + 1).unwrap_or(rest.len())
    } else {
        rest.find(',').unwrap_or(rest.len())
    };
    format!("{}{}", &line[..start], &rest[end..])
}
