//! esc.c: enhanced status codes (RFC 3463) in SMTP replies (OpenSMTPD
//! esc.c 1.5).

/// enum enhanced_status_class: the first digit.
pub const ESC_STATUS_OK: u8 = 2;
pub const ESC_STATUS_TEMPFAIL: u8 = 4;
pub const ESC_STATUS_PERMFAIL: u8 = 5;

// enum enhanced_status_code: the subject and detail digits, as one
// number (subject * 10 + detail).
pub const ESC_OTHER_STATUS: u8 = 0;
pub const ESC_OTHER_ADDRESS_STATUS: u8 = 10;
pub const ESC_BAD_DESTINATION_MAILBOX_ADDRESS: u8 = 11;
pub const ESC_BAD_DESTINATION_SYSTEM_ADDRESS: u8 = 12;
pub const ESC_BAD_DESTINATION_MAILBOX_ADDRESS_SYNTAX: u8 = 13;
pub const ESC_DESTINATION_MAILBOX_ADDRESS_AMBIGUOUS: u8 = 14;
pub const ESC_DESTINATION_ADDRESS_VALID: u8 = 15;
pub const ESC_DESTINATION_MAILBOX_HAS_MOVED: u8 = 16;
pub const ESC_BAD_SENDER_MAILBOX_ADDRESS_SYNTAX: u8 = 17;
pub const ESC_BAD_SENDER_SYSTEM_ADDRESS: u8 = 18;
pub const ESC_OTHER_MAILBOX_STATUS: u8 = 20;
pub const ESC_MAILBOX_DISABLED: u8 = 21;
pub const ESC_MAILBOX_FULL: u8 = 22;
pub const ESC_MESSAGE_LENGTH_TOO_LARGE: u8 = 23;
pub const ESC_MAILING_LIST_EXPANSION_PROBLEM: u8 = 24;
pub const ESC_OTHER_MAIL_SYSTEM_STATUS: u8 = 30;
pub const ESC_MAIL_SYSTEM_FULL: u8 = 31;
pub const ESC_SYSTEM_NOT_ACCEPTING_MESSAGES: u8 = 32;
pub const ESC_SYSTEM_NOT_CAPABLE_OF_SELECTED_FEATURES: u8 = 33;
pub const ESC_MESSAGE_TOO_BIG_FOR_SYSTEM: u8 = 34;
pub const ESC_SYSTEM_INCORRECTLY_CONFIGURED: u8 = 35;
pub const ESC_OTHER_NETWORK_ROUTING_STATUS: u8 = 40;
pub const ESC_NO_ANSWER_FROM_HOST: u8 = 41;
pub const ESC_BAD_CONNECTION: u8 = 42;
pub const ESC_DIRECTORY_SERVER_FAILURE: u8 = 43;
pub const ESC_UNABLE_TO_ROUTE: u8 = 44;
pub const ESC_MAIL_SYSTEM_CONGESTION: u8 = 45;
pub const ESC_ROUTING_LOOP_DETECTED: u8 = 46;
pub const ESC_DELIVERY_TIME_EXPIRED: u8 = 47;
pub const ESC_INVALID_RECIPIENT: u8 = 50;
pub const ESC_INVALID_COMMAND: u8 = 51;
pub const ESC_SYNTAX_ERROR: u8 = 52;
pub const ESC_TOO_MANY_RECIPIENTS: u8 = 53;
pub const ESC_INVALID_COMMAND_ARGUMENTS: u8 = 54;
pub const ESC_WRONG_PROTOCOL_VERSION: u8 = 55;
pub const ESC_OTHER_MEDIA_ERROR: u8 = 60;
pub const ESC_MEDIA_NOT_SUPPORTED: u8 = 61;
pub const ESC_CONVERSION_REQUIRED_AND_PROHIBITED: u8 = 62;
pub const ESC_CONVERSION_REQUIRED_BUT_NOT_SUPPORTED: u8 = 63;
pub const ESC_CONVERSION_WITH_LOSS_PERFORMED: u8 = 64;
pub const ESC_CONVERSION_FAILED: u8 = 65;
pub const ESC_OTHER_SECURITY_STATUS: u8 = 70;
pub const ESC_DELIVERY_NOT_AUTHORIZED_MESSAGE_REFUSED: u8 = 71;
pub const ESC_MAILING_LIST_EXPANSION_PROHIBITED: u8 = 72;
pub const ESC_SECURITY_CONVERSION_REQUIRED_NOT_POSSIBLE: u8 = 73;
pub const ESC_SECURITY_FEATURES_NOT_SUPPORTED: u8 = 74;
pub const ESC_CRYPTOGRAPHIC_FAILURE: u8 = 75;
pub const ESC_CRYPTOGRAPHIC_ALGORITHM_NOT_SUPPORTED: u8 = 76;
pub const ESC_MESSAGE_INTEGRITY_FAILURE: u8 = 77;

/// The descriptions, in C's order: where C lists a code twice the first
/// wins, and C gives ESC_MESSAGE_INTEGRITY_FAILURE's text to
/// ESC_MESSAGE_TOO_BIG_FOR_SYSTEM a second time, so 5.7.7 reads
/// "Other/Undefined" there and here alike (clients see these texts).
const ESC: &[(u8, &str)] = &[
    (ESC_OTHER_STATUS, "Other/Undefined"),
    (ESC_OTHER_ADDRESS_STATUS, "Other/Undefined address status"),
    (
        ESC_BAD_DESTINATION_MAILBOX_ADDRESS,
        "Bad destination mailbox address",
    ),
    (
        ESC_BAD_DESTINATION_SYSTEM_ADDRESS,
        "Bad destination system address",
    ),
    (
        ESC_BAD_DESTINATION_MAILBOX_ADDRESS_SYNTAX,
        "Bad destination mailbox address syntax",
    ),
    (
        ESC_DESTINATION_MAILBOX_ADDRESS_AMBIGUOUS,
        "Destination mailbox address ambiguous",
    ),
    (ESC_DESTINATION_ADDRESS_VALID, "Destination address valid"),
    (
        ESC_DESTINATION_MAILBOX_HAS_MOVED,
        "Destination mailbox has moved, No forwarding address",
    ),
    (
        ESC_BAD_SENDER_MAILBOX_ADDRESS_SYNTAX,
        "Bad sender's mailbox address syntax",
    ),
    (
        ESC_BAD_SENDER_SYSTEM_ADDRESS,
        "Bad sender's system address syntax",
    ),
    (ESC_OTHER_MAILBOX_STATUS, "Other/Undefined mailbox status"),
    (
        ESC_MAILBOX_DISABLED,
        "Mailbox disabled, not accepting messages",
    ),
    (ESC_MAILBOX_FULL, "Mailbox full"),
    (
        ESC_MESSAGE_LENGTH_TOO_LARGE,
        "Message length exceeds administrative limit",
    ),
    (
        ESC_MAILING_LIST_EXPANSION_PROBLEM,
        "Mailing list expansion problem",
    ),
    (
        ESC_OTHER_MAIL_SYSTEM_STATUS,
        "Other/Undefined mail system status",
    ),
    (ESC_MAIL_SYSTEM_FULL, "Mail system full"),
    (
        ESC_SYSTEM_NOT_ACCEPTING_MESSAGES,
        "System not accepting network messages",
    ),
    (
        ESC_SYSTEM_NOT_CAPABLE_OF_SELECTED_FEATURES,
        "System not capable of selected features",
    ),
    (ESC_MESSAGE_TOO_BIG_FOR_SYSTEM, "Message too big for system"),
    (
        ESC_SYSTEM_INCORRECTLY_CONFIGURED,
        "System incorrectly configured",
    ),
    (
        ESC_OTHER_NETWORK_ROUTING_STATUS,
        "Other/Undefined network or routing status",
    ),
    (ESC_NO_ANSWER_FROM_HOST, "No answer from host"),
    (ESC_BAD_CONNECTION, "Bad connection"),
    (ESC_DIRECTORY_SERVER_FAILURE, "Directory server failure"),
    (ESC_UNABLE_TO_ROUTE, "Unable to route"),
    (ESC_MAIL_SYSTEM_CONGESTION, "Mail system congestion"),
    (ESC_ROUTING_LOOP_DETECTED, "Routing loop detected"),
    (ESC_DELIVERY_TIME_EXPIRED, "Delivery time expired"),
    (ESC_INVALID_RECIPIENT, "Invalid recipient"),
    (ESC_INVALID_COMMAND, "Invalid command"),
    (ESC_SYNTAX_ERROR, "Syntax error"),
    (ESC_TOO_MANY_RECIPIENTS, "Too many recipients"),
    (ESC_INVALID_COMMAND_ARGUMENTS, "Invalid command arguments"),
    (ESC_WRONG_PROTOCOL_VERSION, "Wrong protocol version"),
    (ESC_OTHER_MEDIA_ERROR, "Other/Undefined media error"),
    (ESC_MEDIA_NOT_SUPPORTED, "Media not supported"),
    (
        ESC_CONVERSION_REQUIRED_AND_PROHIBITED,
        "Conversion required and prohibited",
    ),
    (
        ESC_CONVERSION_REQUIRED_BUT_NOT_SUPPORTED,
        "Conversion required but not supported",
    ),
    (
        ESC_CONVERSION_WITH_LOSS_PERFORMED,
        "Conversion with loss performed",
    ),
    (ESC_CONVERSION_FAILED, "Conversion failed"),
    (ESC_OTHER_SECURITY_STATUS, "Other/Undefined security status"),
    (
        ESC_DELIVERY_NOT_AUTHORIZED_MESSAGE_REFUSED,
        "Delivery not authorized, message refused",
    ),
    (
        ESC_MAILING_LIST_EXPANSION_PROHIBITED,
        "Mailing list expansion prohibited",
    ),
    (
        ESC_SECURITY_CONVERSION_REQUIRED_NOT_POSSIBLE,
        "Security conversion required but not possible",
    ),
    (
        ESC_SECURITY_FEATURES_NOT_SUPPORTED,
        "Security features not supported",
    ),
    (ESC_CRYPTOGRAPHIC_FAILURE, "Cryptographic failure"),
    (
        ESC_CRYPTOGRAPHIC_ALGORITHM_NOT_SUPPORTED,
        "Cryptographic algorithm not supported",
    ),
    (ESC_MESSAGE_TOO_BIG_FOR_SYSTEM, "Message integrity failure"),
];

/// esc_code(): "class.subject.detail".
pub fn esc_code(class: u8, code: u8) -> String {
    format!("{class}.{}.{}", code / 10, code % 10)
}

/// esc_description().
pub fn esc_description(code: u8) -> &'static str {
    ESC.iter()
        .find(|(c, _)| *c == code)
        .map_or("Other/Undefined", |(_, d)| d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_descriptions() {
        assert_eq!(esc_code(ESC_STATUS_PERMFAIL, ESC_INVALID_COMMAND), "5.5.1");
        assert_eq!(esc_code(ESC_STATUS_OK, ESC_OTHER_STATUS), "2.0.0");
        assert_eq!(esc_description(ESC_INVALID_COMMAND), "Invalid command");
        assert_eq!(
            esc_description(ESC_MESSAGE_TOO_BIG_FOR_SYSTEM),
            "Message too big for system"
        );
        assert_eq!(
            esc_description(ESC_MESSAGE_INTEGRITY_FAILURE),
            "Other/Undefined"
        );
    }
}
