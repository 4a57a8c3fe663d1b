//! `include/ruv_temporal.h` is hand-kept: this test derives the C prototype of every
//! exported function from its Rust type (`CType` below maps each Rust parameter type to
//! its C spelling) and compares it with the header's prototype, checks that the header
//! declares nothing else, and compares the status-code macros with the Rust constants.

use std::collections::BTreeMap;
use std::ffi::c_void;

use aether_ffi::*;

const HEADER: &str = include_str!("../include/ruv_temporal.h");

/// The C spelling of a Rust FFI type.
trait CType {
    fn c() -> &'static str;
}

macro_rules! ctype {
    ($($t:ty => $c:literal),* $(,)?) => { $(impl CType for $t { fn c() -> &'static str { $c } })* };
}

ctype! {
    () => "void",
    i32 => "esp_err_t",
    u32 => "uint32_t",
    usize => "size_t",
    *const u8 => "const uint8_t *",
    *const f32 => "const float *",
    *mut f32 => "float *",
    *mut c_void => "void *",
    *mut ruv_temporal_ctx => "ruv_temporal_ctx_t *",
    *mut *mut ruv_temporal_ctx => "ruv_temporal_ctx_t **",
}

/// The C prototype `(return, [params])` of an `extern "C"` function pointer type.
trait Proto {
    fn proto() -> (String, Vec<String>);
}

macro_rules! proto {
    ($($a:ident),*) => {
        impl<R: CType, $($a: CType),*> Proto for unsafe extern "C" fn($($a),*) -> R {
            fn proto() -> (String, Vec<String>) {
                (norm(R::c()), vec![$(norm($a::c())),*])
            }
        }
    };
}
proto!();
proto!(A);
proto!(A, B);
proto!(A, B, C);
proto!(A, B, C, D, E, F);

fn proto_of<P: Proto>(_: P) -> (String, Vec<String>) {
    P::proto()
}

/// Canonical spelling of a C type: tokens separated by one space, `*` its own token.
fn norm(s: &str) -> String {
    s.replace('*', " * ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// A parameter declaration without its name.
fn param_type(p: &str) -> String {
    let n = norm(p);
    let mut toks: Vec<&str> = n.split(' ').collect();
    let last = *toks.last().unwrap();
    let is_ident = last.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let type_word = matches!(
        last,
        "void" | "float" | "size_t" | "uint8_t" | "uint32_t" | "esp_err_t" | "ruv_temporal_ctx_t"
    );
    if toks.len() > 1 && is_ident && !type_word {
        toks.pop();
    }
    toks.join(" ")
}

/// Every function prototype in the header: name → (return type, parameter types).
fn header_prototypes() -> BTreeMap<String, (String, Vec<String>)> {
    let mut text = String::new();
    let mut rest = HEADER;
    while let Some(i) = rest.find("/*") {
        text.push_str(&rest[..i]);
        let j = rest[i..].find("*/").expect("unterminated comment") + i + 2;
        rest = &rest[j..];
    }
    text.push_str(rest);
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join(" ");
    let mut out = BTreeMap::new();
    for decl in code.split(';') {
        let decl = decl.replace("extern \"C\" {", "").replace('}', "");
        let (Some(open), Some(close)) = (decl.find('('), decl.rfind(')')) else {
            continue;
        };
        let head = &decl[..open];
        let name_start = head
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(0, |i| i + 1);
        let name = head[name_start..].trim().to_string();
        let ret = norm(&head[..name_start]);
        let params: Vec<String> = decl[open + 1..close].split(',').map(param_type).collect();
        let params = if params == ["void"] { vec![] } else { params };
        out.insert(name, (ret, params));
    }
    out
}

#[test]
fn every_prototype_matches_the_rust_signature() {
    type Sig = (String, Vec<String>);
    let rust: BTreeMap<&str, Sig> = [
        (
            "ruv_temporal_init",
            proto_of(ruv_temporal_init as unsafe extern "C" fn(_, _, _, _, _, _) -> _),
        ),
        (
            "ruv_temporal_push",
            proto_of(ruv_temporal_push as unsafe extern "C" fn(_, _) -> _),
        ),
        (
            "ruv_temporal_classify",
            proto_of(ruv_temporal_classify as unsafe extern "C" fn(_, _, _) -> _),
        ),
        (
            "ruv_temporal_destroy",
            proto_of(ruv_temporal_destroy as unsafe extern "C" fn(_) -> _),
        ),
        (
            "ruv_temporal_kernel_self_test",
            proto_of(ruv_temporal_kernel_self_test as unsafe extern "C" fn() -> _),
        ),
        // The firmware's allocator hooks (src/c_alloc.rs declares them; checked below).
        (
            "ruv_temporal_alloc",
            <unsafe extern "C" fn(usize, usize) -> *mut c_void as Proto>::proto(),
        ),
        (
            "ruv_temporal_free",
            <unsafe extern "C" fn(*mut c_void, usize, usize) as Proto>::proto(),
        ),
    ]
    .into_iter()
    .collect();
    let header = header_prototypes();
    assert_eq!(
        header.keys().collect::<Vec<_>>(),
        rust.keys().collect::<Vec<_>>(),
        "the header declares exactly the exported functions and the allocator hooks"
    );
    for (name, want) in &rust {
        assert_eq!(&header[*name], want, "prototype of {name}");
    }
    // The prototype of init in the original firmware, spelled out.
    assert_eq!(
        header["ruv_temporal_init"].1,
        [
            "const uint8_t *",
            "size_t",
            "uint32_t",
            "uint32_t",
            "uint32_t",
            "ruv_temporal_ctx_t * *"
        ]
    );
    // The hook declarations in src/c_alloc.rs are the ones checked above.
    let c_alloc = include_str!("../src/c_alloc.rs");
    assert!(c_alloc.contains("fn ruv_temporal_alloc(size: usize, align: usize) -> *mut c_void;"));
    assert!(c_alloc.contains("fn ruv_temporal_free(ptr: *mut c_void, size: usize, align: usize);"));
    assert!(HEADER.contains("typedef struct ruv_temporal_ctx ruv_temporal_ctx_t;"));
}

#[test]
fn status_macros_match_the_rust_constants() {
    let mut defs = BTreeMap::new();
    for line in HEADER.lines() {
        let mut it = line.split_whitespace();
        if it.next() != Some("#define") {
            continue;
        }
        let (Some(name), Some(value)) = (it.next(), it.next()) else {
            continue;
        };
        let v = value.trim_end_matches('u');
        let parsed = match v.strip_prefix("0x") {
            Some(hex) => i64::from_str_radix(hex, 16).unwrap(),
            None => v.parse::<i64>().unwrap(),
        };
        defs.insert(name.to_string(), parsed);
    }
    let want: [(&str, i32); 9] = [
        ("ESP_OK", ESP_OK),
        ("ESP_FAIL", ESP_FAIL),
        ("ESP_ERR_NO_MEM", ESP_ERR_NO_MEM),
        ("ESP_ERR_INVALID_ARG", ESP_ERR_INVALID_ARG),
        ("ESP_ERR_INVALID_STATE", ESP_ERR_INVALID_STATE),
        ("ESP_ERR_INVALID_SIZE", ESP_ERR_INVALID_SIZE),
        ("ESP_ERR_NOT_SUPPORTED", ESP_ERR_NOT_SUPPORTED),
        ("ESP_ERR_INVALID_CRC", ESP_ERR_INVALID_CRC),
        ("ESP_ERR_INVALID_VERSION", ESP_ERR_INVALID_VERSION),
    ];
    for (name, v) in want {
        assert_eq!(defs.get(name), Some(&(v as i64)), "{name}");
    }
    assert_eq!(
        defs.get("RUV_TEMPORAL_MAX_WINDOW"),
        Some(&(MAX_WINDOW as i64))
    );
    assert!(HEADER.contains("typedef int32_t esp_err_t;"));
}
