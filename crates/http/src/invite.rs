//! The landing page of an invitation (XEP-0401 §3.2, after XEP-0379 §3.3): `GET
//! /invite/TOKEN` on every HTTP listener.
//!
//! Someone who got an invitation link and has no XMPP app yet lands here: the page says
//! which server and what for, offers the `xmpp:` link as a button, and explains how to get
//! an app and come back (XEP-0379 §3.3's three elements, without the browser sniffing: one
//! short list of apps per platform instead). Plain HTML with a `<style>` and no script;
//! everything that comes from the invitation (host, inviter, URI) is escaped.
//!
//! The token is looked up on every served host; an unknown, used, revoked or expired one
//! (or one that is not shaped like ours) gets a 404 with a page saying so in words. Nothing
//! about accounts is read, so the page tells nobody whether one exists. Every answer is
//! `Cache-Control: no-store` (a used invitation must not live on in a cache) and
//! `Referrer-Policy: no-referrer` (the token is in the URL, and must not leave in a
//! `Referer` when a visitor follows a link to an app's site), with a CSP that allows no
//! script, no frame and no outside resource.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use xmppd_core::invites::{Invite, InviteKind, is_token_shaped, unix_now};

use crate::HttpContext;

/// Where landing pages are: the token follows.
pub const PREFIX: &str = "/invite/";
/// The route.
pub(crate) const ROUTE: &str = "/invite/{token}";

/// Apps that can open invitation links (XEP-0401 and XEP-0379 clients), with their sites.
const APPS: &[(&str, &str, &str)] = &[
    ("Conversations", "Android", "https://conversations.im/"),
    ("Monal", "iPhone, iPad and Mac", "https://monal-im.org/"),
    ("Siskin IM", "iPhone and iPad", "https://siskin.im/"),
    ("Dino", "Linux", "https://dino.im/"),
    ("Gajim", "Windows and Linux", "https://gajim.org/"),
];

/// `&`, `<`, `>`, `"` and `'` as character references: safe in text and in quoted
/// attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `2026-12-14 14:30 UTC`.
fn utc_minute(unix: u64) -> String {
    let stamp = xmppd_proto::datetime::format_datetime(UNIX_EPOCH + Duration::from_secs(unix));
    format!(
        "{} UTC",
        stamp.get(..16).unwrap_or(&stamp).replace('T', " ")
    )
}

/// The handler: the page, or the 404 page.
pub(crate) async fn page(
    State(ctx): State<Arc<HttpContext>>,
    Path(token): Path<String>,
) -> Response {
    if !is_token_shaped(&token) {
        return not_found();
    }
    let now = unix_now();
    let settings = ctx.c2s.settings();
    let mut hosts: Vec<&String> = settings.policy.hosts.iter().collect();
    hosts.sort();
    for host in hosts {
        match ctx.invites.get(host, &token).await {
            Ok(Some(invite)) if invite.is_valid_at(now) => {
                return html(StatusCode::OK, render(host, &token, &invite));
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "invitation lookup failed");
                return html(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    document(
                        "Invitation unavailable",
                        "<p>The server cannot look invitations up right now. Please try \
                         again later.</p>",
                    ),
                );
            }
        }
    }
    not_found()
}

fn not_found() -> Response {
    html(
        StatusCode::NOT_FOUND,
        document(
            "Invitation not found",
            "<h1>This invitation is not valid</h1>\n<p>It may have expired or been used \
             already, or the link may be incomplete. Ask the person who sent it for a new \
             one.</p>",
        ),
    )
}

fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; \
             base-uri 'none'; form-action 'none'",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

fn document(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"robots\" content=\"noindex\">\n<title>{}</title>\n<style>\n\
         body {{ font-family: sans-serif; max-width: 36em; margin: 2em auto; padding: 0 1em; \
         line-height: 1.5; }}\n\
         a.button {{ display: inline-block; padding: .7em 1.4em; background: #1a5fb4; \
         color: #fff; border-radius: .4em; text-decoration: none; font-weight: bold; }}\n\
         code {{ word-break: break-all; }}\n</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n",
        escape_html(title)
    )
}

/// The page of a valid invitation of `host`.
pub fn render(host: &str, token: &str, invite: &Invite) -> String {
    let uri = invite.uri(host, token).to_uri();
    let (uri, host) = (escape_html(&uri), escape_html(host));
    let (title, intro, button, steps) = match &invite.kind {
        InviteKind::Account => (
            format!("Invitation to {host}"),
            format!(
                "You are invited to create an account on <strong>{host}</strong>, a server of \
                 the XMPP chat network. With it you can chat with anyone on XMPP, whatever \
                 server they use."
            ),
            "Create my account",
            "Install one of the apps below, then come back to this page and tap the button: \
             the app creates your account and lets you choose its name and password.",
        ),
        InviteKind::NamedAccount { username, .. } => (
            format!("Invitation to {host}"),
            format!(
                "You are invited to create the account <strong>{}@{host}</strong> on a server \
                 of the XMPP chat network. With it you can chat with anyone on XMPP, whatever \
                 server they use.",
                escape_html(username)
            ),
            "Create my account",
            "Install one of the apps below, then come back to this page and tap the button: \
             the app creates your account and lets you choose its password.",
        ),
        InviteKind::Reset { user } => (
            format!("New password on {host}"),
            format!(
                "This link lets you choose a new password for the account \
                 <strong>{}@{host}</strong>.",
                escape_html(user)
            ),
            "Choose a new password",
            "Open it with your XMPP app (one of those below, if you have none yet): it asks \
             for the new password.",
        ),
        InviteKind::Contact { inviter } => (
            format!("Chat with {}@{host}", escape_html(inviter)),
            format!(
                "<strong>{}@{host}</strong> invites you to chat on XMPP, an open chat network \
                 where you can pick your app and your server.",
                escape_html(inviter)
            ),
            "Accept the invitation",
            "If you use an XMPP app already, tap the button: the app adds the contact. \
             Otherwise install one of the apps below, come back and tap the button: the app \
             can create an account on this server for you and adds the contact.",
        ),
    };
    let mut apps = String::new();
    for (name, platforms, site) in APPS {
        apps.push_str(&format!(
            "<li><a href=\"{}\">{}</a> ({})</li>\n",
            escape_html(site),
            escape_html(name),
            escape_html(platforms)
        ));
    }
    let body = format!(
        "<h1>{title}</h1>\n<p>{intro}</p>\n<p><a class=\"button\" href=\"{uri}\">{button}</a></p>\n\
         <p>{steps}</p>\n<h2>Get an app</h2>\n<ul>\n{apps}</ul>\n\
         <p>More apps are listed at <a href=\"https://xmpp.org/software/\">xmpp.org</a>.</p>\n\
         <h2>If the button does nothing</h2>\n<p>Your device has no XMPP app yet, or it does \
         not open these links. Install one, or copy this address into your app:</p>\n\
         <p><code>{uri}</code></p>\n<p>This invitation works once and expires on {}. If you \
         did not expect it, you can ignore it.</p>",
        utc_minute(invite.expires)
    );
    document(&title, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invite(kind: InviteKind) -> Invite {
        Invite {
            kind,
            created: 0,
            expires: 1_796_000_000,
        }
    }

    #[test]
    fn escapes_the_five_characters() {
        assert_eq!(
            escape_html("<a href=\"x\" title='y'>&</a>"),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
    }

    #[test]
    fn the_page_holds_the_uri_host_and_apps_and_no_script() {
        let token = "0123456789abcdef0123456789abcdef01234567";
        let page = render("example.com", token, &invite(InviteKind::Account));
        assert!(page.contains(&format!(
            "href=\"xmpp:example.com?register;preauth={token}\""
        )));
        assert!(page.contains("<strong>example.com</strong>"));
        assert!(page.contains("Conversations") && page.contains("Monal"));
        assert!(page.contains("expires on 2026-11-30 00:53 UTC"), "{page}");
        assert!(!page.to_ascii_lowercase().contains("<script"));
        let contact = render(
            "example.com",
            token,
            &invite(InviteKind::Contact {
                inviter: "romeo".into(),
            }),
        );
        assert!(contact.contains("romeo@example.com?roster;preauth="));
        assert!(contact.contains(";ibr=y"));
    }

    #[test]
    fn what_comes_from_the_invitation_is_escaped() {
        let page = render(
            "<b>evil</b>",
            "t",
            &invite(InviteKind::Reset {
                user: "o'hara\"<x>".into(),
            }),
        );
        assert!(
            !page.contains("<b>evil</b>") && !page.contains("<x>"),
            "{page}"
        );
        assert!(page.contains("&lt;b&gt;evil&lt;/b&gt;"));
    }
}
