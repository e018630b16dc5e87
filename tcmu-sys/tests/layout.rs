//! Checks the Rust mirror against the system's `<linux/target_core_user.h>`.
//!
//! A table of checks is turned into a C program that prints one
//! `name value` line per check; the program is compiled with the system C
//! compiler, run, and every printed value is compared with the value the
//! Rust side computes for the same name. Generating the C source from the
//! same table keeps the two sides from drifting apart.
//!
//! The test needs a C compiler and the kernel UAPI headers. Without them it
//! fails (it never skips): install them with `apt-get install gcc linux-libc-dev`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::mem::{align_of, offset_of, size_of};
use std::process::Command;
use std::sync::OnceLock;

use tcmu_sys::*;

const INSTALL_HINT: &str = "install a C compiler and the kernel UAPI headers: \
                            `apt-get install gcc linux-libc-dev`";

/// Constants of the Rust crate that the UAPI header does not define (they
/// live in the kernel's driver source), so they cannot be checked here.
const NOT_IN_HEADER: &[&str] = &[
    "TCMU_GENL_FAMILY_NAME",
    "TCMU_GENL_VERSION",
    "TCMU_GENL_MCGRP_CONFIG",
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Num(u64),
    Str(&'static str),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Num(n) => write!(f, "{n}"),
            Value::Str(s) => write!(f, "{s:?}"),
        }
    }
}

/// One comparison: `c_expr` evaluated by the C program must equal `rust`.
struct Check {
    name: String,
    c_expr: String,
    rust: Value,
}

fn num(out: &mut Vec<Check>, name: impl Into<String>, c_expr: impl Into<String>, rust: u64) {
    out.push(Check {
        name: name.into(),
        c_expr: c_expr.into(),
        rust: Value::Num(rust),
    });
}

/// Size of the field a projection closure selects.
fn field_size<T, F>(_: fn(&T) -> &F) -> usize {
    size_of::<F>()
}

/// Element size of the (zero-length) array field a projection selects.
fn elem_size<T, E, const N: usize>(_: fn(&T) -> &[E; N]) -> usize {
    size_of::<E>()
}

/// Offset and size of plain struct fields, named after the C struct.
macro_rules! fields {
    ($out:ident, $cstruct:literal, $rty:ty, [$($f:ident),* $(,)?]) => {{
        $(
            num(
                $out,
                concat!($cstruct, ".", stringify!($f), ".offset"),
                concat!("offsetof(struct ", $cstruct, ", ", stringify!($f), ")"),
                offset_of!($rty, $f) as u64,
            );
            num(
                $out,
                concat!($cstruct, ".", stringify!($f), ".size"),
                concat!("sizeof(((struct ", $cstruct, " *)0)->", stringify!($f), ")"),
                field_size(|s: &$rty| &s.$f) as u64,
            );
        )*
    }};
}

/// Offset and size of members of the anonymous union in `tcmu_cmd_entry`.
/// In Rust the union is the `body` field, so offsets are the sum of the
/// union's offset and the member's offset inside the `req`/`rsp` struct.
macro_rules! union_fields {
    ($out:ident, $part:literal, $rty:ty, [$($f:ident),* $(,)?]) => {{
        $(
            num(
                $out,
                concat!("tcmu_cmd_entry.", $part, ".", stringify!($f), ".offset"),
                concat!("offsetof(struct tcmu_cmd_entry, ", $part, ".", stringify!($f), ")"),
                (offset_of!(tcmu_cmd_entry, body) + offset_of!($rty, $f)) as u64,
            );
            num(
                $out,
                concat!("tcmu_cmd_entry.", $part, ".", stringify!($f), ".size"),
                concat!("sizeof(((struct tcmu_cmd_entry *)0)->", $part, ".", stringify!($f), ")"),
                field_size(|s: &$rty| &s.$f) as u64,
            );
        )*
    }};
}

/// Integer constants whose C and Rust names are the same.
macro_rules! consts {
    ($out:ident, [$($c:ident),* $(,)?]) => {{
        $( num($out, stringify!($c), stringify!($c), $c as u64); )*
    }};
}

fn layout_checks(out: &mut Vec<Check>) {
    num(
        out,
        "tcmu_mailbox.sizeof",
        "sizeof(struct tcmu_mailbox)",
        size_of::<tcmu_mailbox>() as u64,
    );
    num(
        out,
        "tcmu_mailbox.alignof",
        "_Alignof(struct tcmu_mailbox)",
        align_of::<tcmu_mailbox>() as u64,
    );
    fields!(
        out,
        "tcmu_mailbox",
        tcmu_mailbox,
        [version, flags, cmdr_off, cmdr_size, cmd_head, cmd_tail]
    );

    // The C header is packed (alignment 1); only size and offsets must agree.
    num(
        out,
        "tcmu_cmd_entry_hdr.sizeof",
        "sizeof(struct tcmu_cmd_entry_hdr)",
        size_of::<tcmu_cmd_entry_hdr>() as u64,
    );
    fields!(
        out,
        "tcmu_cmd_entry_hdr",
        tcmu_cmd_entry_hdr,
        [len_op, cmd_id, kflags, uflags]
    );

    num(
        out,
        "iovec.sizeof",
        "sizeof(struct iovec)",
        size_of::<iovec>() as u64,
    );
    num(
        out,
        "iovec.alignof",
        "_Alignof(struct iovec)",
        align_of::<iovec>() as u64,
    );
    fields!(out, "iovec", iovec, [iov_base, iov_len]);

    num(
        out,
        "tcmu_cmd_entry.sizeof",
        "sizeof(struct tcmu_cmd_entry)",
        size_of::<tcmu_cmd_entry>() as u64,
    );
    fields!(out, "tcmu_cmd_entry", tcmu_cmd_entry, [hdr]);
    num(
        out,
        "tcmu_cmd_entry.req.offset",
        "offsetof(struct tcmu_cmd_entry, req)",
        offset_of!(tcmu_cmd_entry, body) as u64,
    );
    num(
        out,
        "tcmu_cmd_entry.rsp.offset",
        "offsetof(struct tcmu_cmd_entry, rsp)",
        offset_of!(tcmu_cmd_entry, body) as u64,
    );
    num(
        out,
        "tcmu_cmd_entry.req.size",
        "sizeof(((struct tcmu_cmd_entry *)0)->req)",
        size_of::<tcmu_cmd_entry_req>() as u64,
    );
    num(
        out,
        "tcmu_cmd_entry.rsp.size",
        "sizeof(((struct tcmu_cmd_entry *)0)->rsp)",
        size_of::<tcmu_cmd_entry_rsp>() as u64,
    );
    union_fields!(
        out,
        "req",
        tcmu_cmd_entry_req,
        [
            iov_cnt,
            iov_bidi_cnt,
            iov_dif_cnt,
            cdb_off,
            __pad1,
            __pad2,
            iov
        ]
    );
    num(
        out,
        "tcmu_cmd_entry.req.iov.elemsize",
        "sizeof(((struct tcmu_cmd_entry *)0)->req.iov[0])",
        elem_size(|s: &tcmu_cmd_entry_req| &s.iov) as u64,
    );
    union_fields!(
        out,
        "rsp",
        tcmu_cmd_entry_rsp,
        [scsi_status, __pad1, __pad2, read_len, sense_buffer]
    );

    num(
        out,
        "tcmu_tmr_entry.sizeof",
        "sizeof(struct tcmu_tmr_entry)",
        size_of::<tcmu_tmr_entry>() as u64,
    );
    fields!(
        out,
        "tcmu_tmr_entry",
        tcmu_tmr_entry,
        [hdr, tmr_type, __pad1, __pad2, cmd_cnt, __pad3, __pad4]
    );
    // `cmd_ids` is a flexible array member in C: `sizeof` of it is not
    // allowed, so compare its offset and its element size.
    num(
        out,
        "tcmu_tmr_entry.cmd_ids.offset",
        "offsetof(struct tcmu_tmr_entry, cmd_ids)",
        offset_of!(tcmu_tmr_entry, cmd_ids) as u64,
    );
    num(
        out,
        "tcmu_tmr_entry.cmd_ids.elemsize",
        "sizeof(((struct tcmu_tmr_entry *)0)->cmd_ids[0])",
        elem_size(|s: &tcmu_tmr_entry| &s.cmd_ids) as u64,
    );
}

fn constant_checks(out: &mut Vec<Check>) {
    out.push(Check {
        name: "TCMU_VERSION".into(),
        c_expr: "TCMU_VERSION".into(),
        rust: Value::Str(TCMU_VERSION),
    });
    consts!(
        out,
        [
            TCMU_MAILBOX_VERSION,
            ALIGN_SIZE,
            TCMU_MAILBOX_FLAG_CAP_OOOC,
            TCMU_MAILBOX_FLAG_CAP_READ_LEN,
            TCMU_MAILBOX_FLAG_CAP_TMR,
            TCMU_MAILBOX_FLAG_CAP_KEEP_BUF,
            TCMU_OP_PAD,
            TCMU_OP_CMD,
            TCMU_OP_TMR,
            TCMU_OP_MASK,
            TCMU_OP_ALIGN_SIZE,
            TCMU_UFLAG_UNKNOWN_OP,
            TCMU_UFLAG_READ_LEN,
            TCMU_UFLAG_KEEP_BUF,
            TCMU_SENSE_BUFFERSIZE,
            TCMU_TMR_UNKNOWN,
            TCMU_TMR_ABORT_TASK,
            TCMU_TMR_ABORT_TASK_SET,
            TCMU_TMR_CLEAR_ACA,
            TCMU_TMR_CLEAR_TASK_SET,
            TCMU_TMR_LUN_RESET,
            TCMU_TMR_TARGET_WARM_RESET,
            TCMU_TMR_TARGET_COLD_RESET,
            TCMU_TMR_LUN_RESET_PRO,
            TCMU_CMD_UNSPEC,
            TCMU_CMD_ADDED_DEVICE,
            TCMU_CMD_REMOVED_DEVICE,
            TCMU_CMD_RECONFIG_DEVICE,
            TCMU_CMD_ADDED_DEVICE_DONE,
            TCMU_CMD_REMOVED_DEVICE_DONE,
            TCMU_CMD_RECONFIG_DEVICE_DONE,
            TCMU_CMD_SET_FEATURES,
            TCMU_CMD_MAX,
            TCMU_ATTR_UNSPEC,
            TCMU_ATTR_DEVICE,
            TCMU_ATTR_MINOR,
            TCMU_ATTR_PAD,
            TCMU_ATTR_DEV_CFG,
            TCMU_ATTR_DEV_SIZE,
            TCMU_ATTR_WRITECACHE,
            TCMU_ATTR_CMD_STATUS,
            TCMU_ATTR_DEVICE_ID,
            TCMU_ATTR_SUPP_KERN_CMD_REPLY,
            TCMU_ATTR_MAX,
        ]
    );
}

/// `len_op` words the helpers are evaluated on: empty, opcode-only,
/// length-only, both, all bits set, high bits.
const LEN_OPS: &[u32] = &[
    0,
    1,
    2,
    7,
    8,
    0xa1,
    0xa2,
    0x1234_5678,
    0x8000_0001,
    u32::MAX,
];
/// Opcodes for `tcmu_hdr_set_op`, including values wider than the mask.
const OPS: &[u8] = &[0, 1, 2, 3, 7, 8, 0x81, 0xff];
/// Lengths for `tcmu_hdr_set_len`; all multiples of 8, as the header requires.
const ALIGNED_LENS: &[u32] = &[0, 8, 48, 160, 0x10_0000, 0xffff_fff8];
/// Lengths that break the alignment precondition: the C helper ORs the low
/// bits into the opcode, the Rust one drops them, so only the length part
/// is compared for these.
const UNALIGNED_LENS: &[u32] = &[1, 13, 0xffff_ffff];

/// A GNU statement expression that runs a `void f(__u32 *, x)` helper.
fn c_setter(helper: &str, len_op: u32, arg: &str) -> String {
    format!("({{ __u32 v = {len_op}u; {helper}(&v, {arg}); v; }})")
}

fn helper_checks(out: &mut Vec<Check>) {
    for &x in LEN_OPS {
        num(
            out,
            format!("tcmu_hdr_get_op({x:#x})"),
            format!("tcmu_hdr_get_op({x}u)"),
            tcmu_hdr_get_op(x).into(),
        );
        num(
            out,
            format!("tcmu_hdr_get_len({x:#x})"),
            format!("tcmu_hdr_get_len({x}u)"),
            tcmu_hdr_get_len(x).into(),
        );
        for &op in OPS {
            num(
                out,
                format!("tcmu_hdr_set_op({x:#x},{op})"),
                c_setter("tcmu_hdr_set_op", x, &format!("(enum tcmu_opcode){op}")),
                tcmu_hdr_set_op(x, op).into(),
            );
        }
        for &len in ALIGNED_LENS {
            num(
                out,
                format!("tcmu_hdr_set_len({x:#x},{len:#x})"),
                c_setter("tcmu_hdr_set_len", x, &format!("{len}u")),
                tcmu_hdr_set_len(x, len).into(),
            );
        }
        for &len in UNALIGNED_LENS {
            num(
                out,
                format!("tcmu_hdr_get_len(tcmu_hdr_set_len({x:#x},{len:#x}))"),
                format!(
                    "tcmu_hdr_get_len({})",
                    c_setter("tcmu_hdr_set_len", x, &format!("{len}u"))
                ),
                tcmu_hdr_get_len(tcmu_hdr_set_len(x, len)).into(),
            );
        }
    }
}

fn all_checks() -> Vec<Check> {
    let mut out = Vec::new();
    layout_checks(&mut out);
    constant_checks(&mut out);
    helper_checks(&mut out);
    out
}

fn c_program(checks: &[Check]) -> String {
    let mut src = String::from(
        "#include <linux/target_core_user.h>\n\
         #include <stddef.h>\n\
         #include <stdio.h>\n\
         \n\
         int main(void)\n{\n",
    );
    for check in checks {
        match check.rust {
            Value::Num(_) => writeln!(
                src,
                "    printf(\"%s %llu\\n\", \"{}\", (unsigned long long)({}));",
                check.name, check.c_expr
            ),
            Value::Str(_) => writeln!(
                src,
                "    printf(\"%s %s\\n\", \"{}\", {});",
                check.name, check.c_expr
            ),
        }
        .unwrap();
    }
    src.push_str("    return 0;\n}\n");
    src
}

/// Compiles and runs the C program once per test binary; returns its
/// output as `name -> value`.
fn c_values() -> &'static BTreeMap<String, String> {
    static VALUES: OnceLock<BTreeMap<String, String>> = OnceLock::new();
    VALUES.get_or_init(|| {
        let checks = all_checks();
        let tmp = tempfile::Builder::new()
            .prefix("tcmu-sys-layout-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap_or_else(|e| panic!("cannot create a directory for the C check: {e}"));
        let dir = tmp.path();
        let src = dir.join("layout.c");
        let exe = dir.join("layout");
        std::fs::write(&src, c_program(&checks))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", src.display()));

        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
        let compiled = Command::new(&cc)
            .args(["-std=gnu11", "-Wall", "-Werror", "-o"])
            .arg(&exe)
            .arg(&src)
            .output()
            .unwrap_or_else(|e| panic!("cannot run the C compiler `{cc}` ({e}); {INSTALL_HINT}"));
        assert!(
            compiled.status.success(),
            "compiling {} against <linux/target_core_user.h> failed ({INSTALL_HINT}):\n{}",
            src.display(),
            String::from_utf8_lossy(&compiled.stderr)
        );

        let ran = Command::new(&exe)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()));
        assert!(
            ran.status.success(),
            "{} failed: {}",
            exe.display(),
            ran.status
        );
        let stdout = String::from_utf8(ran.stdout).expect("C program printed non-UTF-8");

        let mut values = BTreeMap::new();
        for line in stdout.lines() {
            let (name, value) = line
                .split_once(' ')
                .unwrap_or_else(|| panic!("malformed line from the C program: {line:?}"));
            let previous = values.insert(name.to_owned(), value.to_owned());
            assert!(previous.is_none(), "C program printed {name} twice");
        }
        assert_eq!(
            values.len(),
            checks.len(),
            "C program printed {} values for {} checks",
            values.len(),
            checks.len()
        );

        values
    })
}

/// Runs `checks` against the C output and fails with every mismatch named.
fn compare(what: &str, checks: &[Check]) {
    let c = c_values();
    let mut mismatches = Vec::new();
    for check in checks {
        let Some(c_text) = c.get(&check.name) else {
            mismatches.push(format!("{}: missing from the C output", check.name));
            continue;
        };
        let matches = match check.rust {
            Value::Num(n) => match c_text.parse::<u64>() {
                Ok(c_num) => c_num == n,
                Err(e) => {
                    mismatches.push(format!("{}: C printed {c_text:?} ({e})", check.name));
                    continue;
                }
            },
            Value::Str(s) => c_text == s,
        };
        if !matches {
            mismatches.push(format!(
                "{}: C `{}` = {c_text}, Rust = {}",
                check.name, check.c_expr, check.rust
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{what}: {} mismatch(es) with <linux/target_core_user.h>:\n  {}",
        mismatches.len(),
        mismatches.join("\n  ")
    );
}

#[test]
fn struct_layout_matches_header() {
    let mut checks = Vec::new();
    layout_checks(&mut checks);
    compare("struct layout", &checks);
}

#[test]
fn constants_match_header() {
    let mut checks = Vec::new();
    constant_checks(&mut checks);
    compare("constants", &checks);
}

#[test]
fn len_op_helpers_match_header() {
    let mut checks = Vec::new();
    helper_checks(&mut checks);
    compare("len_op helpers", &checks);
}

/// Every `pub const` of the crate is either compared with the header or
/// listed in `NOT_IN_HEADER`, so a constant added later cannot go unchecked.
#[test]
fn every_constant_is_checked() {
    let mut checks = Vec::new();
    constant_checks(&mut checks);
    let checked: BTreeSet<&str> = checks.iter().map(|c| c.name.as_str()).collect();

    let source = include_str!("../src/lib.rs");
    let declared: Vec<&str> = source
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix("pub const "))
        .filter(|rest| !rest.starts_with("fn "))
        .map(|rest| rest.split(':').next().unwrap().trim())
        .collect();
    assert!(
        declared.len() > 40,
        "found only {} constants in lib.rs",
        declared.len()
    );

    let unchecked: Vec<&str> = declared
        .iter()
        .copied()
        .filter(|name| !checked.contains(name) && !NOT_IN_HEADER.contains(name))
        .collect();
    assert!(
        unchecked.is_empty(),
        "constants not compared with the header: {unchecked:?}"
    );
}
