use super::*;

fn enq() -> Enqueue {
    let mut e = Enqueue::new("sendmail", "mail.example.org");
    e.user = "alice".into();
    e.timestamp = 86400;
    e
}

fn s(v: &[u8]) -> String {
    String::from_utf8_lossy(v).into_owned()
}

fn rcpts(e: &Enqueue) -> Vec<String> {
    e.msg.rcpts.iter().map(|r| s(r)).collect()
}

/// parse_message() over `input`: the parsed copy, and whether it had no
/// header.
fn parse(
    e: &mut Enqueue,
    input: &[u8],
    get_from: bool,
    tflag: bool,
) -> Result<(Vec<u8>, bool), ParseError> {
    let mut out = Vec::new();
    let noheader = parse_message(
        e,
        &mut &input[..],
        get_from,
        tflag,
        &mut out,
        None::<&mut Vec<u8>>,
    )?;
    Ok((out, noheader))
}

/// What enqueue_message() sends for `input` in `form`.
fn render(e: &mut Enqueue, input: &[u8], tflag: bool, form: &Form) -> String {
    let (parsed, noheader) = parse(e, input, true, tflag).unwrap();
    e.msg.noheader = noheader;
    let mut fp = tmpfile().unwrap();
    fp.write_all(&parsed).unwrap();
    let mut out = Vec::new();
    enqueue_message(e, &mut fp, &mut out, form).unwrap();
    s(&out)
}

#[test]
fn addresses_are_taken_from_display_names_comments_and_groups() {
    let mut e = enq();
    let msg = b"To: Bob Smith <bob@example.org>, carol (Carol C.) , \"dave, jr\"@example.org\n\
        Cc: team: erin@example.org, frank;\n\
        Bcc: <grace@example.org>\n\
        \n\
        To: not@a.header\n";
    let (out, noheader) = parse(&mut e, msg, true, true).unwrap();
    assert!(!noheader);
    assert_eq!(
        rcpts(&e),
        [
            "bob@example.org",
            "carol@mail.example.org",
            // rcpt_add splits at commas even in a quoted local part, as C.
            "\"dave@mail.example.org",
            " jr\"@example.org",
            "erin@example.org",
            "frank@mail.example.org",
            "grace@example.org",
        ]
    );
    // The Bcc field is not copied; the body is, header-like or not.
    let out = s(&out);
    assert!(!out.contains("Bcc"), "{out}");
    assert!(out.ends_with("\nTo: not@a.header\n"), "{out}");
}

#[test]
fn continuation_lines_carry_the_address_parser_over() {
    let mut e = enq();
    let msg = b"To: one@example.org,\n two@example.org,\n\t\"Three\n Person\" <three@example.org>\n\nbody\n";
    parse(&mut e, msg, true, true).unwrap();
    assert_eq!(
        rcpts(&e),
        ["one@example.org", "two@example.org", "three@example.org"]
    );
}

#[test]
fn a_quoted_name_after_a_group_is_read_as_a_name() {
    // C reads the quote right after "group: " as an ordinary character,
    // and then fails with "syntax error in address".
    let mut e = enq();
    parse(
        &mut e,
        b"To: group: \"Doe, J\" <j@example.org>;\n\nx\n",
        true,
        true,
    )
    .unwrap();
    assert_eq!(rcpts(&e), ["j@example.org"]);
}

#[test]
fn the_last_address_of_a_message_without_body_is_kept() {
    let mut e = enq();
    parse(&mut e, b"Subject: x\nTo: last@example.org", true, true).unwrap();
    assert_eq!(rcpts(&e), ["last@example.org"]);
}

#[test]
fn unbalanced_quotes_and_comments_are_syntax_errors() {
    for bad in [
        &b"To: \"open@example.org\n\nx\n"[..],
        b"To: a (comment\n\nx\n",
    ] {
        let mut e = enq();
        match parse(&mut e, bad, true, true) {
            Err(ParseError::Address(why)) => assert_eq!(why, "syntax error in address"),
            other => panic!("{other:?} for {}", s(bad)),
        }
    }
    let mut e = enq();
    let long = format!("To: {}@example.org\n\nx\n", "a".repeat(1200));
    match parse(&mut e, long.as_bytes(), true, true) {
        Err(ParseError::Address(why)) => assert_eq!(why, "address exceeds buffer size"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn without_t_header_recipients_are_ignored_and_from_sets_the_sender() {
    let mut e = enq();
    build_from(&mut e, None, None).unwrap();
    assert_eq!(s(&e.msg.from), "alice@mail.example.org");
    parse(
        &mut e,
        b"From: Real Name <real@example.org>\nTo: x@example.org\n\nbody\n",
        true,
        false,
    )
    .unwrap();
    assert!(e.msg.rcpts.is_empty());
    assert!(e.msg.saw_from);
    assert_eq!(s(&e.msg.from), "real@example.org");

    // With -f the From field is only noted.
    let mut e = enq();
    build_from(&mut e, Some("<bounce@example.org>"), None).unwrap();
    parse(&mut e, b"From: real@example.org\n\nbody\n", false, false).unwrap();
    assert_eq!(s(&e.msg.from), "bounce@example.org");
}

#[test]
fn the_sender_comes_from_f_or_the_user_and_the_name_from_gecos() {
    let pw = Passwd {
        name: "alice".into(),
        uid: 1000,
        gid: 1000,
        dir: "/home/alice".into(),
        shell: "/bin/sh".into(),
        gecos: "& Liddell,Room 1,555".into(),
    };
    let mut e = enq();
    build_from(&mut e, None, Some(&pw)).unwrap();
    assert_eq!(s(&e.msg.from), "alice@mail.example.org");
    assert_eq!(e.msg.fromname.as_deref(), Some(&b"Alice Liddell"[..]));

    // -F wins over the account's name.
    let mut e = enq();
    e.msg.fromname = Some(b"CronDaemon".to_vec());
    build_from(&mut e, None, Some(&pw)).unwrap();
    assert_eq!(e.msg.fromname.as_deref(), Some(&b"CronDaemon"[..]));

    // -f: no name from the account; <> is the null sender.
    let mut e = enq();
    build_from(&mut e, Some("<>"), Some(&pw)).unwrap();
    assert_eq!(s(&e.msg.from), "");
    assert_eq!(e.msg.fromname, None);
    let mut e = enq();
    build_from(&mut e, Some("bob"), Some(&pw)).unwrap();
    assert_eq!(s(&e.msg.from), "bob@mail.example.org");
    let mut e = enq();
    assert_eq!(
        build_from(&mut e, Some("<bob"), Some(&pw)),
        Err("leading < but no trailing >")
    );
}

#[test]
fn arguments_with_commas_are_several_recipients() {
    let mut e = enq();
    rcpt_add(&mut e, b"a,b@example.org");
    assert_eq!(rcpts(&e), ["a@mail.example.org", "b@example.org"]);
}

#[test]
fn the_header_is_completed_and_lines_are_dot_stuffed() {
    let mut e = enq();
    e.msg.fromname = Some(b"Alice".to_vec());
    build_from(&mut e, Some("alice"), None).unwrap();
    let out = render(
        &mut e,
        b"Subject: hi\r\nReturn-Path: <x@y>\r\nfrom the mbox line\r\n\r\n.\r\n..two\r\nfrom me\r\n",
        false,
        &Form::SMTP,
    );
    let date = time_to_text(86400);
    assert_eq!(
        out,
        format!(
            "From: Alice <alice@mail.example.org>\r\nDate: {date}\r\nSubject: hi\r\n\r\n..\r\n...two\r\nfrom me\r\n"
        )
    );

    // Present ones are kept, and not added again.
    let mut e = enq();
    let out = render(
        &mut e,
        b"From: a@example.org\nDate: Mon, 1 Jan 2024 00:00:00 +0000\n\nx\n",
        false,
        &Form::SMTP,
    );
    assert_eq!(
        out,
        "From: a@example.org\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\nx\r\n"
    );
}

#[test]
fn a_message_without_header_gets_an_empty_line_before_its_body() {
    let mut e = enq();
    build_from(&mut e, None, None).unwrap();
    let out = render(
        &mut e,
        b"just text\nX-Unknown: y\n",
        false,
        &Form::DEADLETTER,
    );
    assert_eq!(
        out,
        format!(
            "From: <alice@mail.example.org>\nDate: {}\n\njust text\nX-Unknown: y\n",
            time_to_text(86400)
        )
    );
}

#[test]
fn long_lines_make_the_body_quoted_printable() {
    let mut e = enq();
    let long = format!("{}=\u{e9}. \n", "a".repeat(1000));
    let input = format!("Subject: long\n\n{long}short\n");
    let out = render(&mut e, input.as_bytes(), false, &Form::SMTP);
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    for h in [
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=unknown-8bit",
        "Content-Disposition: inline",
        "Content-Transfer-Encoding: quoted-printable",
    ] {
        assert!(head.contains(h), "{head}");
    }
    let lines: Vec<&str> = body.split("\r\n").collect();
    assert!(lines.iter().all(|l| l.len() <= 76), "{lines:?}");
    // Soft breaks, '=' and 8-bit encoded, the final blank too.
    assert!(lines[0].ends_with('='));
    assert!(body.contains("=3D=C3=A9.=20\r\nshort\r\n"), "{body}");

    // A message with its own transfer encoding is left as it is.
    let mut e = enq();
    let input = format!("Content-Transfer-Encoding: 8bit\n\n{long}");
    let out = render(&mut e, input.as_bytes(), false, &Form::SMTP);
    assert!(out.contains(&long.replace('\n', "\r\n")));
    assert!(!out.contains("quoted-printable"));
}

#[test]
fn quoted_printable_pads_codes_with_zeros_and_stuffs_dots_after_soft_breaks() {
    let mut out = Vec::new();
    qp_encoded_write(&mut out, b"tab at the end\t", b"\r\n", true).unwrap();
    // C writes "= 9".
    assert_eq!(s(&out), "tab at the end=09\r\n");

    let mut out = Vec::new();
    let line = format!("{}.after the break", "x".repeat(75));
    qp_encoded_write(&mut out, line.as_bytes(), b"\r\n", true).unwrap();
    assert_eq!(
        s(&out),
        format!("{}=\r\n..after the break\r\n", "x".repeat(75))
    );
}

#[test]
fn a_header_without_body_with_long_lines_is_encoded_too() {
    // Without any header field, C labels the body quoted-printable and
    // sends it as it is.
    let mut e = enq();
    let input = format!("{}=x\n", "b".repeat(1000));
    let out = render(&mut e, input.as_bytes(), false, &Form::SMTP);
    assert!(out.contains("Content-Transfer-Encoding: quoted-printable"));
    assert!(out.contains("=3Dx\r\n"), "{out}");
}

#[test]
fn crlf_input_is_read_as_lines() {
    let mut e = enq();
    let (out, _) = parse(&mut e, b"To: a@example.org\r\n\r\nline\r\nlast", true, true).unwrap();
    assert_eq!(s(&out), "To: a@example.org\n\nline\nlast\n");
    assert_eq!(rcpts(&e), ["a@example.org"]);
}

#[test]
fn a_carriage_return_inside_a_line_makes_the_body_quoted_printable() {
    // Progress meters in cron output: smtpd refuses a bare CR on the
    // wire, so it travels as =0D.
    let mut e = enq();
    let out = render(
        &mut e,
        b"Subject: cron\n\n10%\r50%\r100%\nend\r\r\n",
        false,
        &Form::SMTP,
    );
    assert!(
        out.contains("Content-Transfer-Encoding: quoted-printable\r\n"),
        "{out}"
    );
    assert!(
        out.ends_with("\r\n\r\n10%=0D50%=0D100%\r\nend=0D\r\n"),
        "{out}"
    );
    assert!(!out.replace("\r\n", "").contains('\r'), "{out}");
}
