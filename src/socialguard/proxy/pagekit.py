"""What every page the proxy shows a person has in common: the district's name, whom to contact
(as links a phone can tap), a reference to quote, and one stylesheet sized for a thumb.

The pages are read on phones as often as on desks: touch targets are at least 44 px (Apple's and
WCAG 2.5.5's figure), text in inputs at least 16 px (iOS zooms into smaller ones), and nothing is
fetched or scripted (the proxy's CSP allows only the inline style; see answers.py).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

__all__ = ["STYLE", "Brand", "contact_block", "contact_links", "follow_up_page"]

# One stylesheet for the block page and its follow-up pages; tests assert the sizes it promises.
STYLE = """
  :root { color-scheme: light; }
  body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
         background: #f4f5f7; color: #1d2330; line-height: 1.5; font-size: 1rem; }
  main { max-width: 38rem; margin: 0 auto; padding: 1rem; }
  .card { background: #fff; border-radius: .6rem; padding: 1.25rem;
          box-shadow: 0 1px 3px rgba(0,0,0,.12); margin-bottom: 1rem; }
  .district { margin: 0 0 .25rem; font-size: .95rem; font-weight: 600; color: #3d4657; }
  h1 { font-size: 1.5rem; line-height: 1.25; margin: 0 0 .5rem; color: #a3261b; }
  h2 { font-size: 1.1rem; margin: 0 0 .5rem; }
  .site { margin: 0 0 .75rem; overflow-wrap: anywhere; }
  .reason { font-size: 1.05rem; margin: 0 0 1rem; }
  .contact { border-top: 1px solid #dde1e8; padding-top: 1rem; }
  .contact p { margin: 0 0 .5rem; }
  .links { display: flex; flex-wrap: wrap; gap: .5rem; margin: 0 0 .75rem; padding: 0;
           list-style: none; }
  a.tap, button { display: inline-flex; align-items: center; justify-content: center;
                  min-height: 44px; min-width: 44px; box-sizing: border-box;
                  padding: .6rem 1rem; border-radius: .5rem; font: inherit; font-size: 1rem;
                  font-weight: 600; text-decoration: none; cursor: pointer; }
  a.tap { background: #1a4fa3; color: #fff; border: 2px solid #1a4fa3;
          overflow-wrap: anywhere; }
  button { background: #fff; color: #1a4fa3; border: 2px solid #1a4fa3; }
  a:focus-visible, button:focus-visible, textarea:focus-visible, summary:focus-visible {
    outline: 3px solid #f0b400; outline-offset: 2px; }
  .ref { font-family: ui-monospace, Menlo, Consolas, monospace; font-weight: 700;
         white-space: nowrap; }
  .choices h2 { font-size: 1.05rem; color: #3d4657; }
  h3 { font-size: 1.1rem; margin: 0 0 .5rem; }
  .sg-form { margin: 0 0 1.25rem; }
  .sg-form p { margin: 0 0 .5rem; }
  label { display: block; margin: 0 0 .5rem; font-weight: 600; }
  input[type=text], input[type=password] {
    display: block; width: 100%; box-sizing: border-box; min-height: 44px; margin-top: .35rem;
    padding: .5rem .6rem; font: inherit; font-size: 16px; border: 1px solid #8a93a3;
    border-radius: .4rem; }
  input:focus-visible { outline: 3px solid #f0b400; outline-offset: 2px; }
  textarea { display: block; width: 100%; box-sizing: border-box; min-height: 5.5rem;
             margin-top: .35rem; padding: .6rem; font: inherit; font-size: 16px;
             border: 1px solid #8a93a3; border-radius: .4rem; }
  .note { background: #fff7e0; border-left: 4px solid #b07d00; padding: .6rem .8rem;
          margin: 0 0 1rem; }
  details { margin-top: .5rem; }
  summary { min-height: 44px; box-sizing: border-box; padding: .6rem 0; cursor: pointer;
            color: #3d4657; }
  dl { display: grid; grid-template-columns: max-content 1fr; gap: .3rem .9rem; margin: .5rem 0; }
  dt { color: #4d5666; }
  dd { margin: 0; overflow-wrap: anywhere; }
  .small { font-size: .95rem; color: #3d4657; }
  @media (max-width: 26rem) { dl { grid-template-columns: 1fr; } dt { margin-top: .4rem; } }
"""

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
# North American and international numbers as people write them: (406) 555-0100, +1 406 555 0100
_PHONE = re.compile(r"\+?\d?[\s.-]?\(?\d{3}\)?[\s.-]?\d{3}[\s.-]?\d{4}\b")
DEFAULT_CONTACT = "your school's administration"


@dataclass(frozen=True, slots=True)
class Brand:
    """Whose page it is and whom to ask: the rules' `district` section."""

    district: str
    contact: str | None = None
    policy_url: str | None = None


def contact_links(contact: str | None) -> tuple[str, str]:
    """(`who` as escaped text, the links as an HTML list): each phone number in the district's
    contact becomes a tel: link and each address a mailto: link, so a phone can call or write
    with one tap. What is neither (a name, an office) stays text."""
    text = contact or DEFAULT_CONTACT
    found = [
        (m.start(), "mailto:" + m.group(0), "Email " + m.group(0)) for m in _EMAIL.finditer(text)
    ]
    found += [
        (m.start(), "tel:" + re.sub(r"[^\d+]", "", m.group(0)), "Call " + m.group(0).strip())
        for m in _PHONE.finditer(text)
    ]
    links = [
        f'<li><a class="tap" href="{html.escape(href)}">{html.escape(label)}</a></li>'
        for _, href, label in sorted(found)
    ]
    rest = _PHONE.sub("", _EMAIL.sub("", text))
    who = ", ".join(p.strip() for p in rest.split(",") if p.strip()) or DEFAULT_CONTACT
    items = "".join(links)
    return html.escape(who), (f'<ul class="links">{items}</ul>' if items else "")


def contact_block(brand: Brand, reference: str | None, *, heading: str = "Questions?") -> str:
    """The "whom to contact" section every page carries, with the reference to quote."""
    who, links = contact_links(brand.contact)
    ref = (
        f'<p>Quote the reference <span class="ref">{html.escape(reference)}</span>.</p>'
        if reference
        else ""
    )
    return (
        f'<section class="contact" aria-labelledby="contact-h"><h2 id="contact-h">{heading}</h2>'
        f"<p>Contact {who}.</p>{links}{ref}</section>"
    )


def follow_up_page(
    title: str, body_html: str, brand: Brand, reference: str | None, *, tone: str = "info"
) -> bytes:
    """A page shown after a form: the district, what happened, whom to contact, the reference."""
    colour = {"info": "#1d2330", "ok": "#1b6b33", "error": "#a3261b"}.get(tone, "#1d2330")
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{html.escape(title)} — {html.escape(brand.district)}</title>"
        f"<style>{STYLE} h1 {{ color: {colour}; }}</style></head><body><main>"
        f'<div class="card"><p class="district">{html.escape(brand.district)}</p>'
        f"<h1>{html.escape(title)}</h1>{body_html}"
        f"{contact_block(brand, reference)}</div></main></body></html>"
    ).encode()
