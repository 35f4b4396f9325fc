//! Registration refuses look-alikes of existing and reserved names with the real binary
//! (issue 11 #6: `ali.ce`, `ali-ce` and `Admin.` used to register).

mod common;

use common::*;

#[test]
fn lookalikes_of_existing_and_reserved_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&dir.path().join("srv"), "127.0.0.1:0", &[]);
    let home = dir.path();
    assert_eq!(ChatProc::login(&server.addr, "alice", home).finish().0, 0);
    for name in [
        "ali.ce", "ali-ce", "A_lice", "a1ice", "Admin.", "r00t", "_server_",
    ] {
        let (code, log) = ChatProc::start(&server.addr, name, home).exit_code();
        assert_eq!(code, 3, "{name}: {log:?}");
        let msg = log[0]["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains("too similar") || msg.contains("reserved"),
            "{name}: {log:?}"
        );
    }
    // A different name with separators still registers.
    assert_eq!(ChatProc::login(&server.addr, "bo.b", home).finish().0, 0);
}
