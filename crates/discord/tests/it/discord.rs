//! The Discord client against the fake Discord API: paging, rate limits,
//! error answers, decoding, and rendering what was fetched.

use std::collections::BTreeMap;
use std::time::Duration;

use orch_discord::testing::{
    FakeDiscord, FakeDiscordFailure, FakeDiscordOptions, RecordedDiscordRequest,
};
use orch_discord::{
    BotToken, DiscordClient, DiscordConfig, DiscordError, Message, RenderOptions, render,
};

const TOKEN: &str = "MTEwMDAwMDAwMDAwMDAwMDAwMQ.Gx7-secret.bot-token-0042";
const CHANNEL: &str = "1100000000000000001";
const FORBIDDEN: &str = "1100000000000000002";
const UNKNOWN: &str = "1100000000000000003";

fn start_id() -> u64 {
    FakeDiscord::snowflake_at("2026-11-25T09:00:00Z".parse().unwrap())
}

fn options(messages: Vec<Message>) -> FakeDiscordOptions {
    FakeDiscordOptions {
        token: TOKEN.to_owned(),
        channels: BTreeMap::from([(CHANNEL.to_owned(), messages)]),
        forbidden: [FORBIDDEN.to_owned()].into(),
        ..FakeDiscordOptions::default()
    }
}

async fn fake(opts: FakeDiscordOptions) -> FakeDiscord {
    FakeDiscord::start(opts).await.expect("fake discord starts")
}

fn client_with(url: &str, token: &str, edit: impl FnOnce(&mut DiscordConfig)) -> DiscordClient {
    let mut config = DiscordConfig::new(BotToken::new(token));
    config.base_url = url.to_owned();
    edit(&mut config);
    DiscordClient::new(config).expect("valid config")
}

fn client(fake: &FakeDiscord) -> DiscordClient {
    client_with(&fake.url(), TOKEN, |_| {})
}

/// What a caller sees of `err` (Display, then Debug), after checking that
/// the token appears in neither.
fn shown(err: &DiscordError) -> String {
    let text = format!("{err}\n{err:?}");
    assert!(!text.contains(TOKEN), "token leaked: {text}");
    assert!(!text.contains("secret"), "token leaked: {text}");
    text
}

fn limits_and_befores(requests: &[RecordedDiscordRequest]) -> Vec<(Option<&str>, Option<&str>)> {
    requests
        .iter()
        .map(|r| (r.param("limit"), r.param("before")))
        .collect()
}

fn ids(messages: &[Message]) -> Vec<u64> {
    messages.iter().map(|m| m.id.parse().unwrap()).collect()
}

#[tokio::test]
async fn pages_across_250_messages_oldest_first() {
    let all = FakeDiscord::generate_messages(250, start_id());
    let discord = fake(options(all.clone())).await;
    let got = client(&discord)
        .recent_messages(CHANNEL, 250)
        .await
        .unwrap();

    // Exactly the channel's messages, decoded field for field, oldest
    // first, no duplicates.
    assert_eq!(got, all);
    let got_ids = ids(&got);
    assert!(got_ids.windows(2).all(|w| w[0] < w[1]));

    let requests = discord.requests();
    assert_eq!(
        limits_and_befores(&requests),
        [
            (Some("100"), None),
            (Some("100"), Some(all[150].id.as_str())),
            (Some("50"), Some(all[50].id.as_str())),
        ]
    );
    for r in &requests {
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, format!("/api/v10/channels/{CHANNEL}/messages"));
        assert!(r.auth_valid);
        let ua = r.user_agent.as_deref().unwrap();
        assert!(
            ua.starts_with("DiscordBot (https://github.com/atomizer-hq/orch, "),
            "{ua}"
        );
    }
}

#[tokio::test]
async fn returns_the_newest_when_the_channel_has_more() {
    let all = FakeDiscord::generate_messages(430, start_id());
    let discord = fake(options(all.clone())).await;
    let got = client(&discord)
        .recent_messages(CHANNEL, 120)
        .await
        .unwrap();
    assert_eq!(got, all[310..]);
    assert_eq!(
        limits_and_befores(&discord.requests()),
        [
            (Some("100"), None),
            (Some("20"), Some(all[330].id.as_str()))
        ]
    );
}

#[tokio::test]
async fn asking_for_more_than_there_is_stops_at_a_short_page() {
    let all = FakeDiscord::generate_messages(250, start_id());
    let discord = fake(options(all.clone())).await;
    let got = client(&discord)
        .recent_messages(CHANNEL, 1000)
        .await
        .unwrap();
    assert_eq!(got, all);
    assert_eq!(
        limits_and_befores(&discord.requests()),
        [
            (Some("100"), None),
            (Some("100"), Some(all[150].id.as_str())),
            (Some("100"), Some(all[50].id.as_str())),
        ]
    );

    // A channel of exactly one full page needs a second, empty one to
    // know it ended.
    let all = FakeDiscord::generate_messages(100, start_id());
    let discord = fake(options(all.clone())).await;
    let got = client(&discord)
        .recent_messages(CHANNEL, 150)
        .await
        .unwrap();
    assert_eq!(got, all);
    assert_eq!(discord.requests().len(), 2);

    // An empty channel.
    let discord = fake(options(Vec::new())).await;
    let got = client(&discord).recent_messages(CHANNEL, 10).await.unwrap();
    assert!(got.is_empty());
    assert_eq!(
        limits_and_befores(&discord.requests()),
        [(Some("10"), None)]
    );
}

#[tokio::test]
async fn bad_arguments_are_refused_without_a_request() {
    let discord = fake(options(FakeDiscord::generate_messages(5, start_id()))).await;
    let c = client(&discord);
    assert_eq!(c.recent_messages(CHANNEL, 0).await.unwrap(), []);
    let mut out = Vec::new();
    for (channel, count) in [(CHANNEL, 1001), ("technical", 10), ("", 10), ("12 34", 10)] {
        let err = c.recent_messages(channel, count).await.unwrap_err();
        assert!(matches!(err, DiscordError::Config { .. }), "{err:?}");
        out.push(shown(&err));
    }
    assert!(discord.requests().is_empty());
    insta::assert_snapshot!(out.join("\n\n"));
}

#[tokio::test(start_paused = true)]
async fn waits_out_a_429_then_succeeds() {
    let all = FakeDiscord::generate_messages(150, start_id());
    let mut opts = options(all.clone());
    opts.fail_next = vec![
        FakeDiscordFailure::RateLimited {
            retry_after_secs: 1.5,
        },
        // The retry is rate limited too, globally this time.
        FakeDiscordFailure::GlobalRateLimited {
            retry_after_secs: 0.25,
        },
    ];
    let discord = fake(opts).await;
    let got = client(&discord)
        .recent_messages(CHANNEL, 150)
        .await
        .unwrap();
    assert_eq!(got, all);

    let requests = discord.requests();
    assert_eq!(
        limits_and_befores(&requests),
        [
            (Some("100"), None),
            (Some("100"), None),
            (Some("100"), None),
            (Some("50"), Some(all[50].id.as_str())),
        ]
    );
    // Each retry came exactly `retry_after` later (paused time), the
    // next page at once.
    assert_eq!(requests[1].at - requests[0].at, Duration::from_millis(1500));
    assert_eq!(requests[2].at - requests[1].at, Duration::from_millis(250));
    assert_eq!(requests[3].at - requests[2].at, Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_429_past_the_wait_budget_is_an_error() {
    let mut opts = options(FakeDiscord::generate_messages(10, start_id()));
    opts.fail_next = vec![
        FakeDiscordFailure::RateLimited {
            retry_after_secs: 3.0,
        },
        FakeDiscordFailure::RateLimited {
            retry_after_secs: 2.5,
        },
    ];
    let discord = fake(opts).await;
    let c = client_with(&discord.url(), TOKEN, |c| {
        c.max_retry_wait = Duration::from_secs(5);
    });
    let t0 = tokio::time::Instant::now();
    let err = c.recent_messages(CHANNEL, 10).await.unwrap_err();
    // The first wait fits the budget; the second would not, so it is not
    // started.
    assert_eq!(t0.elapsed(), Duration::from_secs(3));
    assert_eq!(
        err,
        DiscordError::RateLimited {
            waited: Duration::from_secs(3),
            retry_after: Duration::from_millis(2500),
            budget: Duration::from_secs(5),
        }
    );
    assert_eq!(discord.requests().len(), 2);
    let first = shown(&err);

    // A wait longer than the whole budget is not started at all.
    let discord = fake(options(Vec::new())).await;
    discord.push_failure(FakeDiscordFailure::GlobalRateLimited {
        retry_after_secs: 3600.0,
    });
    let t0 = tokio::time::Instant::now();
    let err = client(&discord)
        .recent_messages(CHANNEL, 10)
        .await
        .unwrap_err();
    assert_eq!(t0.elapsed(), Duration::ZERO);
    assert_eq!(
        err,
        DiscordError::RateLimited {
            waited: Duration::ZERO,
            retry_after: Duration::from_secs(3600),
            budget: Duration::from_secs(30),
        }
    );
    insta::assert_snapshot!(format!("{first}\n\n{}", shown(&err)));
}

#[tokio::test]
async fn error_answers_say_what_to_fix() {
    let discord = fake(options(FakeDiscord::generate_messages(3, start_id()))).await;
    let good = client(&discord);
    let wrong_token = client_with(&discord.url(), "not-the-token", |_| {});
    let mut out = Vec::new();

    let err = wrong_token.recent_messages(CHANNEL, 5).await.unwrap_err();
    assert_eq!(err, DiscordError::Unauthorized);
    out.push(shown(&err));

    let err = good.recent_messages(FORBIDDEN, 5).await.unwrap_err();
    assert_eq!(
        err,
        DiscordError::Forbidden {
            channel: FORBIDDEN.to_owned()
        }
    );
    out.push(shown(&err));

    let err = good.recent_messages(UNKNOWN, 5).await.unwrap_err();
    assert_eq!(
        err,
        DiscordError::UnknownChannel {
            channel: UNKNOWN.to_owned()
        }
    );
    out.push(shown(&err));

    // The Authorization header is checked: only the right token passes.
    let auth: Vec<bool> = discord.requests().iter().map(|r| r.auth_valid).collect();
    assert_eq!(auth, [false, true, true]);

    // A base URL without /api/v10: Discord's plain 404, not "unknown
    // channel".
    let no_version = client_with(discord.url().trim_end_matches("/api/v10"), TOKEN, |_| {});
    let err = no_version.recent_messages(CHANNEL, 5).await.unwrap_err();
    assert!(
        matches!(err, DiscordError::Http { status: 404, .. }),
        "{err:?}"
    );
    out.push(shown(&err));

    let text = out
        .join("\n\n")
        .replace(&discord.addr().to_string(), "[addr]");
    insta::assert_snapshot!(text);
}

#[tokio::test(start_paused = true)]
async fn server_errors_are_retried_twice() {
    let all = FakeDiscord::generate_messages(3, start_id());
    let mut opts = options(all.clone());
    opts.fail_next = vec![
        FakeDiscordFailure::ServerError(503),
        FakeDiscordFailure::ServerError(502),
    ];
    let discord = fake(opts).await;
    let got = client(&discord).recent_messages(CHANNEL, 5).await.unwrap();
    assert_eq!(got, all);
    let requests = discord.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[1].at - requests[0].at, Duration::from_millis(500));
    assert_eq!(requests[2].at - requests[1].at, Duration::from_secs(1));

    for _ in 0..3 {
        discord.push_failure(FakeDiscordFailure::ServerError(503));
    }
    discord.push_failure(FakeDiscordFailure::ServerError(500));
    let c = client(&discord);
    let first = c.recent_messages(CHANNEL, 5).await.unwrap_err();
    let second = c.recent_messages(CHANNEL, 5).await.unwrap_err();
    assert!(matches!(first, DiscordError::Http { status: 503, .. }));
    assert!(matches!(second, DiscordError::Http { status: 500, .. }));
    let text = format!("{}\n\n{}", shown(&first), shown(&second))
        .replace(&discord.addr().to_string(), "[addr]");
    insta::assert_snapshot!(text);
}

#[tokio::test]
async fn malformed_pages_and_authorless_messages() {
    let discord = fake(options(Vec::new())).await;
    let c = client(&discord);
    let mut out = Vec::new();
    let bodies = [
        r#"{"message": "not a list"}"#.to_owned(),
        "<html>oops</html>".to_owned(),
        r#"[{"id": "5", "author": {"id": "1", "username": "u"}, "timestamp": 7}]"#.to_owned(),
        r#"[{"author": {"id": "1", "username": "u"}, "timestamp": "x"}]"#.to_owned(),
        format!(r#"{{"echo": "{TOKEN}"}}"#),
    ];
    for body in bodies {
        discord.push_failure(FakeDiscordFailure::Status { status: 200, body });
        let err = c.recent_messages(CHANNEL, 5).await.unwrap_err();
        assert!(matches!(err, DiscordError::Decode { .. }), "{err:?}");
        out.push(shown(&err));
    }
    insta::assert_snapshot!(out.join("\n\n"));

    // A system message without an author is skipped; the rest decodes,
    // unknown fields and all.
    let body = r#"[
        {"id": "30", "type": 0, "author": {"id": "1", "username": "ada", "global_name": null, "avatar": null},
         "content": "hello", "timestamp": "2026-11-25T10:03:00.000000+00:00", "nonce": "x", "flags": 0},
        {"id": "20", "type": 7, "content": "", "timestamp": "2026-11-25T10:02:00.000000+00:00"},
        {"id": "10", "author": {"id": "2", "username": "bob", "bot": true}, "timestamp": "2026-11-25T10:01:00+00:00",
         "referenced_message": null, "message_reference": {"message_id": "1", "guild_id": "9"}}
    ]"#;
    discord.push_failure(FakeDiscordFailure::Status {
        status: 200,
        body: body.to_owned(),
    });
    let got = c.recent_messages(CHANNEL, 5).await.unwrap();
    let summary: Vec<(&str, &str, bool)> = got
        .iter()
        .map(|m| (m.id.as_str(), m.author.username.as_str(), m.author.bot))
        .collect();
    assert_eq!(summary, [("10", "bob", true), ("30", "ada", false)]);
}

#[tokio::test(start_paused = true)]
async fn a_server_that_never_answers_times_out() {
    // A listener nobody accepts on: the connection is made (backlog), the
    // answer never comes. Held open for the whole test, so no other test
    // can take its port.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let c = client_with(&format!("http://{addr}/api/v10"), TOKEN, |c| {
        c.request_timeout = Duration::from_secs(15);
    });
    let t0 = tokio::time::Instant::now();
    let err = c.recent_messages(CHANNEL, 5).await.unwrap_err();
    assert_eq!(t0.elapsed(), Duration::from_secs(15));
    assert!(matches!(err, DiscordError::Connect { .. }), "{err:?}");
    let text = shown(&err).replace(&addr.to_string(), "[addr]");
    insta::assert_snapshot!(text);
    drop(silent);
}

#[tokio::test]
async fn empty_content_from_others_is_flagged() {
    // What a bot without the Message Content intent sees: other users'
    // text is empty, its own and attachments are not.
    let mut all = FakeDiscord::generate_messages(12, start_id());
    for m in &mut all {
        if !m.author.bot {
            m.content.clear();
        }
    }
    let discord = fake(options(all)).await;
    let got = client(&discord).recent_messages(CHANNEL, 12).await.unwrap();
    let r = render(&got, &RenderOptions::new("#technical"));
    // 12 messages, 2 by the bot, one of the rest with an attachment.
    assert_eq!(r.empty_content_from_others, 9);
    insta::assert_snapshot!(r.text);
}

#[tokio::test]
async fn fetched_then_rendered_within_the_budget() {
    let discord = fake(options(FakeDiscord::generate_messages(250, start_id()))).await;
    let got = client(&discord)
        .recent_messages(CHANNEL, 250)
        .await
        .unwrap();
    let r = render(&got, &RenderOptions::new("#technical"));
    assert!(r.text.chars().count() <= 4000);
    assert_eq!(r.shown + r.cut, 250);
    assert_eq!(r.empty_content_from_others, 0);
    let lines: Vec<&str> = r.text.lines().collect();
    assert_eq!(
        lines[0],
        format!(
            "Recent messages in #technical ({} of 250 shown, oldest first):",
            r.shown
        )
    );
    assert_eq!(
        lines[1],
        format!(
            "({} older messages cut to fit the 4000-character budget)",
            r.cut
        )
    );
    // The newest message is last.
    assert!(
        lines.last().unwrap().contains("message 249: "),
        "{}",
        r.text
    );
    insta::assert_snapshot!(r.text);
}
