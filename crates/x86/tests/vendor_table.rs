//! The vendor table (tests/common/vendor.rs): every entry is well formed, and its pin (the
//! emulator alone on inputs where the vendors differ) gives Intel's result, on any host. On an
//! Intel host the pinned dot-product values are also checked against the host itself.

mod common;
use common::vendor::{self, Relax, Vendor, TABLE};

#[test]
fn every_entry_cites_the_manuals_and_names_its_forms() {
    vendor::host();
    assert!(!TABLE.is_empty());
    for e in TABLE {
        assert!(!e.forms.is_empty());
        assert!(
            e.cite.contains("Intel SDM"),
            "{:?}: cites Intel's SDM",
            e.forms
        );
        assert!(e.cite.contains("AMD APM"), "{:?}: cites AMD's APM", e.forms);
        assert!(
            e.cite.contains('§')
                || e.cite.contains("instruction reference")
                || e.cite.contains("DPPS"),
            "{:?}: names a section",
            e.forms
        );
        assert!(!e.masked.is_empty());
    }
}

#[test]
fn pins_hold() {
    for e in TABLE {
        (e.pin)();
    }
}

#[test]
fn nothing_relaxes_on_an_intel_host_or_outside_the_table() {
    let forms = TABLE.iter().flat_map(|e| e.forms.iter());
    if vendor::host().vendor == Vendor::Intel {
        for f in forms {
            assert_eq!(vendor::relaxations(f).count(), 0, "{f}");
        }
    }
    assert_eq!(vendor::relaxations("add rax, rbx").count(), 0);
    assert_eq!(vendor::gpr_compare_masks("a32 lodsq"), [u64::MAX; 16]);
}

#[test]
fn dot_product_class_compare() {
    use vendor::dot_product_lanes_agree as agree;
    let one = 1.0f32.to_bits() as u64;
    assert!(agree([one, 0], [one, 0], 32).is_ok());
    assert!(agree([one, 0], [one + 1, 0], 32).is_ok(), "1 ulp");
    assert_eq!(agree([one, 0], [one + 2, 0], 32), Err(0));
    assert!(
        agree([0x7fc0_0001, 0], [0xffc0_0002, 0], 32).is_ok(),
        "both NaN"
    );
    assert_eq!(agree([0x7fc0_0001, 0], [one, 0], 32), Err(0));
    assert!(
        agree([0x8000_0000 << 32, 0], [0, 0], 32).is_ok(),
        "signed zeros"
    );
    assert_eq!(agree([0, one], [0, 0], 32), Err(2));
    assert!(agree([0x7ff8_0000_0000_0001, 0], [0x7ff8_0000_0000_0002, 0], 64).is_ok());
    assert!(matches!(
        TABLE
            .iter()
            .find(|e| e.forms.contains(&"dpps_ff"))
            .unwrap()
            .relax,
        Relax::DotProduct
    ));
}

/// The inputs of the dot-product pin, on the host: an Intel host must give the pinned values.
#[cfg(target_arch = "x86_64")]
#[test]
fn dot_product_pin_matches_an_intel_host() {
    use std::arch::x86_64::*;
    if vendor::host().vendor != Vendor::Intel {
        return; // not an oracle for Intel's behaviour; the pin itself ran in `pins_hold`
    }
    assert!(std::arch::is_x86_feature_detected!("sse4.1"));
    // SAFETY: SSE4.1 is present (checked above).
    unsafe {
        let big = 16_777_216.0f32;
        let r = _mm_dp_ps::<0xf1>(_mm_setr_ps(big, 1.0, 1.0, -big), _mm_set1_ps(1.0));
        assert_eq!(_mm_cvtss_f32(r), 1.0);
        let qa = f32::from_bits(0x7fc0_0001);
        let qb = f32::from_bits(0x7fc0_0002);
        let r = _mm_dp_ps::<0x3f>(_mm_setr_ps(qa, qb, 0.0, 0.0), _mm_set1_ps(1.0));
        let mut out = [0u32; 4];
        _mm_storeu_si128(out.as_mut_ptr() as *mut __m128i, _mm_castps_si128(r));
        assert_eq!(out, [0x7fc0_0002, 0x7fc0_0001, 0x7fc0_0002, 0x7fc0_0001]);
        let da = f64::from_bits(0x7ff8_0000_0000_0001);
        let db = f64::from_bits(0x7ff8_0000_0000_0002);
        let r = _mm_dp_pd::<0x31>(_mm_setr_pd(da, db), _mm_set1_pd(1.0));
        assert_eq!(_mm_cvtsd_f64(r).to_bits(), 0x7ff8_0000_0000_0001);
    }
}
