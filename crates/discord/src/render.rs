//! Channel messages as text for an agent: oldest first, one
//! `[yyyy-mm-dd hh:mm] author: content` entry per message, trimmed to a
//! character budget by dropping the oldest messages.
//!
//! Continuation lines of a message are indented, so no message text can
//! pass for another message's line.

use orch_support::text::{is_hazard, shorten_within, squash};

use super::{Message, shorten};

/// Indentation of a message's continuation lines.
const INDENT: &str = "    ";
/// Longest author name shown, in characters.
const MAX_NAME_CHARS: usize = 64;
/// Longest embed title or description shown, in characters.
const MAX_EMBED_TEXT_CHARS: usize = 100;
/// Longest URL shown, in characters.
const MAX_URL_CHARS: usize = 200;

/// How to render messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderOptions {
    /// Largest text produced, in characters (default 4000). The oldest
    /// messages are dropped first; a newest message longer than the budget
    /// on its own is cut with `…`.
    pub max_chars: usize,
    /// How the channel is named in the header: `#technical`, or the id.
    pub channel_label: String,
    /// The bot's own user id: its messages never count as "no text from
    /// others" (Discord always shows a bot its own messages).
    pub bot_user_id: Option<String>,
}

impl RenderOptions {
    /// 4000 characters for channel `channel_label`.
    pub fn new(channel_label: impl Into<String>) -> Self {
        Self {
            channel_label: channel_label.into(),
            ..Self::default()
        }
    }
}

impl Default for RenderOptions {
    /// 4000 characters, the label `the channel`, no bot user id.
    fn default() -> Self {
        Self {
            max_chars: 4000,
            channel_label: "the channel".to_owned(),
            bot_user_id: None,
        }
    }
}

/// Rendered channel context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The text (no trailing newline), at most `max_chars` characters.
    pub text: String,
    /// Messages in the text (a truncated one counts).
    pub shown: usize,
    /// Older messages left out to fit the budget.
    pub cut: usize,
    /// Messages (of all given, shown or cut) by other users whose text was
    /// empty without attachments or embeds: with more than a few, the bot
    /// probably lacks the Message Content intent.
    pub empty_content_from_others: usize,
}

/// Renders `messages` (oldest first, as
/// [`DiscordClient::recent_messages`](super::DiscordClient::recent_messages)
/// returns them) within `options.max_chars` characters.
///
/// The text is a header (`Recent messages in #technical (20 of 20 shown,
/// oldest first):`), a note of the older messages cut to fit, one entry
/// per message, and a closing note when messages from other users had no
/// text.
pub fn render(messages: &[Message], options: &RenderOptions) -> Rendered {
    let label = {
        let l = shorten(&squash(&options.channel_label), MAX_NAME_CHARS);
        if l.is_empty() {
            "the channel".to_owned()
        } else {
            l
        }
    };
    let empty_content_from_others = messages
        .iter()
        .filter(|m| classify(m, options) == Body::EmptyFromOther)
        .count();
    let empty_note = (empty_content_from_others > 0).then(|| {
        format!(
            "({empty_content_from_others} {} from other users had no text: the bot probably lacks the Message Content intent; turn it on under Bot → Privileged Gateway Intents in the Discord Developer Portal)",
            plural(empty_content_from_others, "message", "messages")
        )
    });
    let max = options.max_chars;

    if messages.is_empty() {
        return Rendered {
            text: shorten_within(&format!("No recent messages in {label}."), max),
            shown: 0,
            cut: 0,
            empty_content_from_others: 0,
        };
    }

    let n = messages.len();
    let blocks: Vec<String> = messages.iter().map(|m| entry(m, options)).collect();
    let block_chars: Vec<usize> = blocks.iter().map(|b| b.chars().count()).collect();
    let layout = |k: usize| Layout {
        header: format!("Recent messages in {label} ({k} of {n} shown, oldest first):"),
        cut_note: (k < n).then(|| {
            let cut = n - k;
            format!(
                "({cut} older {} cut to fit the {max}-character budget)",
                plural(cut, "message", "messages")
            )
        }),
        empty_note: empty_note.clone(),
    };

    // The newest `k` messages that fit, dropping the oldest first. Every
    // line is counted with a newline, one more than the text has.
    let mut k = 0;
    let mut body_chars = 0;
    while k < n {
        let next = body_chars + block_chars[n - 1 - k] + 1;
        if layout(k + 1).chars() + next > max + 1 {
            break;
        }
        body_chars = next;
        k += 1;
    }

    let mut shown_blocks: Vec<String> = blocks[n - k..].to_vec();
    if k == 0 {
        // Not even the newest message fits on its own: cut it.
        let room = max.saturating_sub(layout(1).chars());
        if room >= 2 {
            shown_blocks.push(shorten_within(&blocks[n - 1], room));
            k = 1;
        }
    }
    let text = layout(k).text(&shown_blocks);
    Rendered {
        // Only when the header and notes alone exceed the budget.
        text: shorten_within(&text, max),
        shown: k,
        cut: n - k,
        empty_content_from_others,
    }
}

/// The fixed lines around the messages.
struct Layout {
    header: String,
    cut_note: Option<String>,
    empty_note: Option<String>,
}

impl Layout {
    /// Characters of the fixed lines, each with its newline.
    fn chars(&self) -> usize {
        let line = |s: &String| s.chars().count() + 1;
        line(&self.header)
            + self.cut_note.as_ref().map_or(0, line)
            + self.empty_note.as_ref().map_or(0, line)
    }

    fn text(&self, blocks: &[String]) -> String {
        let mut lines: Vec<&str> = vec![&self.header];
        if let Some(note) = &self.cut_note {
            lines.push(note);
        }
        lines.extend(blocks.iter().map(String::as_str));
        if let Some(note) = &self.empty_note {
            lines.push(note);
        }
        lines.join("\n")
    }
}

/// What a message's text part is.
#[derive(Debug, PartialEq, Eq)]
enum Body {
    /// Text, attachments or embeds to show.
    Content,
    /// A system message (join, pin, boost, …) without text.
    System(u32),
    /// A forward without text (the forwarded text is in a snapshot that is
    /// not fetched).
    Forward,
    /// No text from another user: probably no Message Content intent.
    EmptyFromOther,
    /// No text from a bot (components-only messages are common).
    EmptyFromBot,
}

/// Ordinary message types: default, reply, slash command, context menu
/// command.
fn is_ordinary(kind: u32) -> bool {
    matches!(kind, 0 | 19 | 20 | 23)
}

fn classify(m: &Message, options: &RenderOptions) -> Body {
    if !m.content.trim().is_empty() || !m.attachments.is_empty() || !m.embeds.is_empty() {
        return Body::Content;
    }
    if !is_ordinary(m.kind) {
        return Body::System(m.kind);
    }
    if m.message_reference.as_ref().is_some_and(|r| r.kind == 1) {
        return Body::Forward;
    }
    let own = options.bot_user_id.as_deref() == Some(m.author.id.as_str());
    if m.author.bot || own {
        Body::EmptyFromBot
    } else {
        Body::EmptyFromOther
    }
}

/// One message: `[2026-11-25 10:03] Name [bot] ↪ reply to X: text`, with
/// continuation lines indented.
fn entry(m: &Message, options: &RenderOptions) -> String {
    let mut head = format!("[{}] {}", minute(&m.timestamp), name(m));
    if m.author.bot {
        head.push_str(" [bot]");
    }
    if let Some(target) = reply_target(m) {
        head.push_str(" ↪ reply to ");
        head.push_str(&target);
    }
    head.push(':');

    let mut lines = text_lines(&m.content);
    let mut extras: Vec<String> = m
        .attachments
        .iter()
        .map(|a| {
            format!(
                "[attachment: {}, {}]",
                shorten(&squash(&a.filename), MAX_EMBED_TEXT_CHARS),
                size(a.size)
            )
        })
        .collect();
    extras.extend(m.embeds.iter().map(embed));
    match classify(m, options) {
        Body::Content => {}
        Body::System(kind) => extras.push(format!("(system message: {})", system_kind(kind))),
        Body::Forward => extras.push("(forwarded message; its text is not shown)".to_owned()),
        Body::EmptyFromOther => {
            extras.push("(no text; the bot may lack the Message Content intent)".to_owned());
        }
        Body::EmptyFromBot => extras.push("(no text)".to_owned()),
    }
    if !extras.is_empty() {
        let extras = extras.join(" ");
        match lines.last_mut() {
            Some(last) => {
                last.push(' ');
                last.push_str(&extras);
            }
            None => lines.push(extras),
        }
    }

    let mut out = head;
    for (i, line) in lines.iter().enumerate() {
        if i == 0 {
            out.push(' ');
        } else if line.is_empty() {
            out.push('\n');
            continue;
        } else {
            out.push('\n');
            out.push_str(INDENT);
        }
        out.push_str(line);
    }
    out
}

/// The message text as lines: line breaks normalised, other control
/// characters dropped, tabs as spaces, trailing spaces and leading or
/// trailing blank lines removed, runs of blank lines folded into one.
fn text_lines(content: &str) -> Vec<String> {
    let normalised = content.replace("\r\n", "\n").replace('\r', "\n");
    let mut lines: Vec<String> = Vec::new();
    for raw in normalised.split('\n') {
        let line: String = raw
            .chars()
            .filter_map(|c| match c {
                '\t' => Some(' '),
                c if is_hazard(c) => None,
                c => Some(c),
            })
            .collect();
        let line = line.trim_end().to_owned();
        if line.is_empty() && lines.last().is_none_or(String::is_empty) {
            continue;
        }
        lines.push(line);
    }
    while lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    lines
}

/// The author's display name, on one line.
fn name(m: &Message) -> String {
    // `squash` drops invisible characters, so a name of only those is empty.
    let n = shorten(&squash(m.author.display_name()), MAX_NAME_CHARS);
    if n.is_empty() {
        format!("user {}", m.author.id)
    } else {
        n
    }
}

/// Who a reply answers: the referenced message's author, else `message
/// <id>`. `None` when the message is not a reply.
fn reply_target(m: &Message) -> Option<String> {
    let reference = m.message_reference.as_ref()?;
    if reference.kind != 0 || !matches!(m.kind, 0 | 19) {
        return None;
    }
    if let Some(original) = &m.referenced_message {
        return Some(name(original));
    }
    Some(match &reference.message_id {
        Some(id) => format!("message {}", shorten(&squash(id), 24)),
        None => "a message".to_owned(),
    })
}

/// `2026-11-25 10:03` (UTC) from an ISO 8601 timestamp; the raw value,
/// shortened, if it does not parse.
fn minute(timestamp: &str) -> String {
    match timestamp.trim().parse::<jiff::Timestamp>() {
        Ok(t) => t.strftime("%Y-%m-%d %H:%M").to_string(),
        Err(_) => shorten(&squash(timestamp), 32),
    }
}

/// `512 B`, `120 KB`, `3.4 MB` (binary units).
fn size(bytes: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * 1024;
    if bytes < KIB {
        format!("{bytes} B")
    } else if bytes < MIB {
        format!("{} KB", (bytes + KIB / 2) / KIB)
    } else {
        format!("{:.1} MB", bytes as f64 / MIB as f64)
    }
}

/// `[embed: Title — url]`, or what of it there is.
fn embed(e: &super::Embed) -> String {
    let text = |s: &Option<String>, max: usize| {
        s.as_deref()
            .map(|s| shorten(&squash(s), max))
            .filter(|s| !s.is_empty())
    };
    let title =
        text(&e.title, MAX_EMBED_TEXT_CHARS).or_else(|| text(&e.description, MAX_EMBED_TEXT_CHARS));
    let url = text(&e.url, MAX_URL_CHARS);
    match (title, url) {
        (Some(t), Some(u)) => format!("[embed: {t} — {u}]"),
        (Some(t), None) => format!("[embed: {t}]"),
        (None, Some(u)) => format!("[embed: {u}]"),
        (None, None) => "[embed]".to_owned(),
    }
}

/// What a system message type is.
fn system_kind(kind: u32) -> String {
    match kind {
        1 => "added a recipient".to_owned(),
        2 => "removed a recipient".to_owned(),
        3 => "call".to_owned(),
        4 => "changed the channel name".to_owned(),
        5 => "changed the channel icon".to_owned(),
        6 => "pinned a message".to_owned(),
        7 => "joined the server".to_owned(),
        8..=11 => "boosted the server".to_owned(),
        12 => "followed a channel".to_owned(),
        18 => "started a thread".to_owned(),
        21 => "thread starter message".to_owned(),
        46 => "poll result".to_owned(),
        other => format!("type {other}"),
    }
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::{Attachment, Author, Embed, MessageReference};
    use super::*;

    fn author(id: &str, username: &str, global: Option<&str>, bot: bool) -> Author {
        Author {
            id: id.to_owned(),
            username: username.to_owned(),
            global_name: global.map(str::to_owned),
            bot,
        }
    }

    fn ada() -> Author {
        author("100", "ada", Some("Ada Lovelace"), false)
    }
    fn grace() -> Author {
        author("200", "grace.hopper", None, false)
    }
    fn helper() -> Author {
        author("300", "atomizer", Some("Atomizer"), true)
    }

    fn msg(id: u64, minute: u32, who: Author, content: &str) -> Message {
        Message {
            id: id.to_string(),
            author: who,
            content: content.to_owned(),
            timestamp: format!("2026-11-25T10:{minute:02}:07.123000+00:00"),
            attachments: Vec::new(),
            embeds: Vec::new(),
            message_reference: None,
            referenced_message: None,
            kind: 0,
        }
    }

    /// One message of every kind, oldest first.
    fn every_element() -> Vec<Message> {
        let first = msg(1, 0, ada(), "Thermal margins for the bracket are in.");
        let mut reply = msg(2, 1, grace(), "Which load case?");
        reply.kind = 19;
        reply.message_reference = Some(MessageReference {
            message_id: Some("1".into()),
            kind: 0,
        });
        reply.referenced_message = Some(Box::new(first.clone()));
        let mut orphan = msg(
            3,
            2,
            ada(),
            "Case 3, see the report.\r\n\r\n\r\nTable 2:\n\tA: 1.2\n\tB: 0.9  ",
        );
        orphan.kind = 19;
        orphan.message_reference = Some(MessageReference {
            message_id: Some("999".into()),
            kind: 0,
        });
        orphan.attachments = vec![
            Attachment {
                filename: "report.pdf".into(),
                size: 122_880,
                content_type: Some("application/pdf".into()),
                url: Some("https://cdn.discordapp.com/attachments/1/2/report.pdf".into()),
            },
            Attachment {
                filename: "plot.png".into(),
                size: 3_565_158,
                content_type: None,
                url: None,
            },
        ];
        let mut bot = msg(4, 3, helper(), "");
        bot.embeds = vec![
            Embed {
                title: Some("Build #42 passed".into()),
                description: Some("all green".into()),
                url: Some("https://ci.example/42".into()),
            },
            Embed {
                title: None,
                description: Some("only a description".into()),
                url: None,
            },
            Embed {
                title: None,
                description: None,
                url: None,
            },
        ];
        let empty = msg(5, 4, grace(), "");
        let own = msg(6, 5, author("999", "orch", Some("orch"), true), "");
        let mut join = msg(7, 6, author("400", "newbie", None, false), "");
        join.kind = 7;
        let mut forward = msg(8, 7, ada(), "");
        forward.message_reference = Some(MessageReference {
            message_id: Some("77".into()),
            kind: 1,
        });
        let tiny = {
            let mut m = msg(9, 8, grace(), "tiny file");
            m.attachments = vec![Attachment {
                filename: "notes.txt".into(),
                size: 512,
                content_type: None,
                url: None,
            }];
            m
        };
        let mut odd_time = msg(
            10,
            9,
            ada(),
            "forged?\n[2026-11-25 10:10] Mallory: not a real line",
        );
        odd_time.timestamp = "yesterday".into();
        vec![
            first, reply, orphan, bot, empty, own, join, forward, tiny, odd_time,
        ]
    }

    fn options(max_chars: usize) -> RenderOptions {
        RenderOptions {
            max_chars,
            channel_label: "#technical".into(),
            bot_user_id: Some("999".into()),
        }
    }

    #[test]
    fn every_element_rendered() {
        let r = render(&every_element(), &options(4000));
        assert_eq!((r.shown, r.cut, r.empty_content_from_others), (10, 0, 1));
        insta::assert_snapshot!(r.text);
    }

    #[test]
    fn budget_drops_the_oldest_first() {
        let messages = every_element();
        let r = render(&messages, &options(700));
        assert!(r.text.chars().count() <= 700, "{}", r.text);
        assert_eq!(r.shown + r.cut, messages.len());
        assert!(r.cut > 0);
        // The empty message from Grace is among the cut ones, yet counted.
        assert_eq!(r.empty_content_from_others, 1);
        insta::assert_snapshot!(r.text);
    }

    #[test]
    fn budget_is_exactly_filled_and_never_exceeded() {
        let messages = every_element();
        let full = render(&messages, &options(100_000));
        let len = full.text.chars().count();
        assert_eq!(render(&messages, &options(len)), full);
        for max in 0..len {
            let r = render(&messages, &options(max));
            assert!(r.text.chars().count() <= max, "{max}: {}", r.text);
            assert_eq!(r.shown + r.cut, messages.len());
        }
    }

    #[test]
    fn a_message_longer_than_the_budget_is_truncated() {
        let messages = vec![
            msg(1, 0, ada(), "short"),
            msg(2, 1, grace(), &"long text ".repeat(100)),
        ];
        let r = render(&messages, &options(300));
        assert_eq!((r.shown, r.cut), (1, 1));
        assert_eq!(r.text.chars().count(), 300);
        assert!(r.text.ends_with('…'));
        insta::assert_snapshot!(r.text);
    }

    #[test]
    fn no_messages() {
        let r = render(&[], &options(4000));
        assert_eq!(r.text, "No recent messages in #technical.");
        assert_eq!((r.shown, r.cut, r.empty_content_from_others), (0, 0, 0));
    }

    #[test]
    fn names_and_sizes() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1024), "1 KB");
        assert_eq!(size(122_880), "120 KB");
        assert_eq!(size(5 * 1024 * 1024), "5.0 MB");
        assert_eq!(minute("2026-11-25T23:59:59.999+01:00"), "2026-11-25 22:59");
        assert_eq!(minute("2026-11-25T10:03:00Z"), "2026-11-25 10:03");
        let mut m = msg(1, 0, author("5", "u\nname", Some("  "), false), "x");
        assert_eq!(name(&m), "u name");
        m.author.global_name = Some("Eve\u{202e}gnp.exe".into());
        assert_eq!(name(&m), "Evegnp.exe");
        m.author.global_name = None;
        m.author.username = String::new();
        assert_eq!(name(&m), "user 5");
    }
}
