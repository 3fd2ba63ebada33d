//! Unit tests of the forward scanner and its word-at-a-time searches.

use super::*;

#[test]
fn string_end_finds_the_first_quote_or_backslash_at_any_position() {
    // Every position in and around the word-sized steps and the vectorised tail, with the
    // byte that stops it alone, after the other one, and after near-misses (bytes one off).
    for len in 0..150 {
        for stop in [b'"', b'\\'] {
            for at in 0..len {
                let mut text = vec![b'a'; len];
                for (i, b) in text.iter_mut().enumerate() {
                    *b = [b'!', b'#', b'[', b']', b'a', 0x80 | b'"', 0xff][i % 7];
                }
                text[at] = stop;
                if at + 1 < len {
                    text[at + 1] = if stop == b'"' { b'\\' } else { b'"' };
                }
                assert_eq!(string_end(&text), Some(at), "len {len}, at {at}");
            }
            let none = vec![b'!'; len];
            assert_eq!(string_end(&none), None, "len {len}");
        }
    }
}

#[test]
fn a_word_holds_a_byte_exactly_when_one_of_its_bytes_is_it() {
    // Near-misses too: bytes one off, and the ones bit 5 folds.
    let misses = [
        b'!', b'#', b'Z', b'^', b'z', b'|', b'~', 0x02, 0x3b, 0x3d, 0xfb, 0xdb, b'a', 0x80,
    ];
    for needle in [b'"', b'\\'] {
        for bits in 0..=255u8 {
            let bytes: [u8; 8] = std::array::from_fn(|i| {
                if bits & (1 << i) != 0 {
                    needle
                } else {
                    misses[(i + usize::from(bits)) % misses.len()]
                }
            });
            assert_eq!(
                has_byte(u64::from_le_bytes(bytes), needle),
                bits != 0,
                "{bytes:?}"
            );
        }
    }
}

#[test]
fn structural_searches_find_the_last_bracket_or_quote() {
    // Near-misses: the bytes one off each structural byte, and the ones bit 5 folds.
    let misses = [
        b'!', b'#', b'Z', b'\\', b'^', b'z', b'|', b'~', 0x02, 0x3b, 0x3d, 0xfb, 0xdb, b'a',
    ];
    for len in 0..40 {
        for stop in [b'"', b'{', b'[', b'}', b']'] {
            for at in 0..len {
                let mut text: Vec<u8> = (0..len).map(|i| misses[i % misses.len()]).collect();
                text[at] = stop;
                assert_eq!(prev_structural(&text), Some(at), "len {len}, at {at}");
                if at + 1 < len {
                    text[at + 1] = b'"';
                    assert_eq!(prev_structural(&text), Some(at + 1));
                }
            }
        }
        let none: Vec<u8> = (0..len).map(|i| misses[i % misses.len()]).collect();
        assert_eq!(prev_structural(&none), None);
    }
}

#[test]
fn strings_with_escapes_are_read_whole() {
    let text = br#""a\"b\\\\" , "c""#;
    let mut scan = Scan::new(text);
    assert_eq!(scan.string(), Some(&br#"a\"b\\\\"#[..]));
    assert_eq!(scan.eat(b','), Some(()));
    assert_eq!(scan.string(), Some(&b"c"[..]));
    assert_eq!(Scan::new(br#""unterminated\""#).string(), None);
    assert_eq!(
        Scan::new(br#""caf\u00e9""#).string_value().as_deref(),
        Some("café")
    );
    assert_eq!(Scan::new(br#""bad \x""#).string_value(), None);
}

#[test]
fn numbers_and_flags_are_read_as_json_writes_them() {
    let number = |text: &[u8]| Scan::new(text).number();
    assert_eq!(number(b" 42 "), Some(42));
    assert_eq!(number(b"0"), Some(0));
    assert_eq!(number(b"18446744073709551615"), Some(u64::MAX));
    for bad in [
        &b"18446744073709551616"[..],
        b"01",
        b"-1",
        b"1.0",
        b"1e3",
        b"12abc",
        b"",
        b"-",
    ] {
        assert_eq!(number(bad), None, "{}", String::from_utf8_lossy(bad));
    }
    let integer = |text: &'static [u8]| Scan::new(text).integer();
    assert_eq!(
        integer(b"-9223372036854775808"),
        Some("-9223372036854775808")
    );
    assert_eq!(integer(b"-9223372036854775809"), None);
    assert_eq!(integer(b"-0"), None);
    assert_eq!(integer(b"429}"), Some("429"));

    let flag = |text: &[u8]| Scan::new(text).flag();
    assert_eq!(flag(b"true"), Some(Some(true)));
    assert_eq!(flag(b" false,"), Some(Some(false)));
    assert_eq!(flag(b"null}"), Some(None));
    assert_eq!(flag(b"nullx"), None);
    assert_eq!(flag(b"tru"), None);
}

#[test]
fn members_decode_keys_and_refuse_broken_objects() {
    let mut keys = Vec::new();
    let text = br#"{ "a" : 1 , "\u0062" : [ ] , "c\"" : {"x": "y"} }"#;
    Scan::new(text)
        .members(|scan, key| {
            keys.push(key.to_vec());
            scan.skip_value()
        })
        .unwrap();
    assert_eq!(keys, [&b"a"[..], b"b", b"c\""]);
    for bad in [
        &br#"{"a":1,}"#[..],
        br#"{"a" 1}"#,
        br#"{"a":1 "b":2}"#,
        br#"{"\q":1}"#,
        br#"{"a":1"#,
        br#"{,}"#,
    ] {
        let walked = Scan::new(bad).members(|scan, _| scan.skip_value());
        assert_eq!(walked, None, "{}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn containers_are_skipped_with_matching_brackets_up_to_the_bound() {
    let skip = |text: &[u8]| {
        let mut scan = Scan::new(text);
        scan.skip_value().is_some() && scan.at_end()
    };
    assert!(skip(br#"[1, {"a": "]}[{"}, [[]], "\"]"]"#));
    assert!(!skip(b"[1}"));
    assert!(!skip(b"{]"));
    assert!(!skip(b"[[]"));
    let nested = |levels: usize| format!("{}{}", "[".repeat(levels), "]".repeat(levels));
    assert!(skip(nested(MAX_DEPTH as usize).as_bytes()));
    assert!(!skip(nested(MAX_DEPTH as usize + 1).as_bytes()));
    assert!(!skip(nested(1_000_000).as_bytes()));
    // Inside an object the object's own level counts.
    let inside = |levels: usize| format!(r#"{{"a":{}}}"#, nested(levels));
    let walk = |text: String| Scan::new(text.as_bytes()).members(|scan, _| scan.skip_value());
    assert!(walk(inside(MAX_DEPTH as usize - 1)).is_some());
    assert!(walk(inside(MAX_DEPTH as usize)).is_none());
}

#[test]
fn literals_are_skipped_leniently_but_not_structure() {
    let skip = |text: &[u8]| Scan::new(text).skip_value();
    assert_eq!(skip(b"nul"), Some(()), "documented leniency");
    assert_eq!(skip(b"-1.5e+3"), Some(()));
    assert_eq!(skip(b":1"), None);
    assert_eq!(skip(b","), None);
    assert_eq!(skip(b""), None);
}
