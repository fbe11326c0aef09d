//! Fuzzes the envelope text form (envelope.c): any input loads or is
//! refused without a panic; an envelope that loads dumps to a text that
//! loads back to it (as far as the text form carries it) and dumps to
//! the same text again; and no dumped text holds CR or NUL.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smtpd::queue::envelope::{
    envelope_dump_buffer, envelope_load_buffer, BounceType, DeliveryBounce, DeliveryType, Envelope,
    EnvelopeError,
};

/// What the text form carries of an envelope: esc-code only with an
/// esc-class, the mda fields only for D_MDA, the bounce fields only for
/// D_BOUNCE (its ttl and delay only for a delay warning). Load takes
/// whichever keys it is given, as C's does.
fn carried(e: &Envelope) -> Envelope {
    let mut e = e.clone();
    if e.esc_class == 0 {
        e.esc_code = 0;
    }
    if e.type_ != DeliveryType::Mda {
        e.mda_exec.clear();
        e.mda_subaddress.clear();
        e.mda_user.clear();
    }
    if e.type_ != DeliveryType::Bounce {
        e.agent_bounce = DeliveryBounce::default();
    } else if e.agent_bounce.type_ != BounceType::Delayed {
        e.agent_bounce.ttl = 0;
        e.agent_bounce.delay = 0;
    }
    e
}

fuzz_target!(|data: &[u8]| {
    let Ok(e1) = envelope_load_buffer(data) else {
        return;
    };
    let text = match envelope_dump_buffer(&e1) {
        Ok(text) => text,
        // Keys the input left out are written, numbers in full: a text
        // near the limit may no longer fit (C's dump fails there too).
        Err(EnvelopeError::TooLarge(_)) => return,
        Err(e) => panic!("a loaded envelope does not dump: {e}"),
    };
    assert!(!text.contains(['\r', '\0']));
    let e2 = match envelope_load_buffer(text.as_bytes()) {
        Ok(e2) => e2,
        Err(e) => panic!("a dumped envelope does not load: {e}\n{text}"),
    };
    assert_eq!(e2, carried(&e1), "{text}");
    assert_eq!(envelope_dump_buffer(&e2).as_deref(), Ok(text.as_str()));
});
