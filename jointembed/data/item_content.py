"""One content text per item (title, genres, year), for a text tower that places items nobody has interacted with.

The text of an item reads ``"<title>. genres: <g1>, <g2>. year: <year>"``, e.g. ``"The American President.
genres: comedy, drama, romance. year: 1995"`` for MovieLens's ``"American President, The (1995)"``:

- **Title.** The year is taken from the title's last ``(1995)`` (or ``(1975-1979)``, read as 1975), which may
  be followed only by tags such as ``(V)`` (kept in the text); the rest is the title text. MovieLens moves
  leading articles to the end (``"American President, The"``); they are put back in front, in the title and in
  each parenthesised alternative title (``"La Double vie de Véronique (The Double Life of Veronique)"``).
  MovieLens keeps no year elsewhere that its titles lack (ml-100k's release dates are of a release, not of the
  film), so a title without a year gives a text without one.
- **Genres** lower-cased, in the source's order, joined by ``", "``.
- A part that is missing is left out: ``"genres: drama. year: 1995"`` for an item without a title.

**Empty content.** An item has no usable content when it has no title text (beyond a year) and no genres. The
placeholders MovieLens writes where it knows nothing count as nothing: the title ``"unknown"`` (ml-100k's item
267) and the genres ``"unknown"`` (ml-100k's flag column) and ``"(no genres listed)"``. Such an item's text is
``""`` and :func:`item_content_texts` warns, naming how many and the first few item IDs and raw keys; it must not
be embedded as if it had content (an encoder gives ``""`` a vector like any other). :func:`empty_content` lists
them, so a model relies on their ID embedding alone while they are warm and refuses or skips them when cold.
"""

from __future__ import annotations

import re
import warnings

from jointembed.data.interactions import Interactions

__all__ = ["item_content_texts", "empty_content", "parse_title", "PLACEHOLDER_GENRES", "PLACEHOLDER_TITLES"]

PLACEHOLDER_TITLES: frozenset[str] = frozenset({"unknown"})  # compared case-insensitively, on titles without a year
PLACEHOLDER_GENRES: frozenset[str] = frozenset({"unknown", "(no genres listed)"})  # compared case-insensitively

# the last "(1995)" or "(1975-1979)" / "(2016– )", followed only by parenthesised tags such as "(V)"
_YEAR = re.compile(r"\s*\((\d{4})(?:\s*[-–]\s*(?:\d{4})?)?\s*\)(?=(?:\s*\([^()]*\))*\s*$)")
_ARTICLE = re.compile(
    r"^(?P<body>.+), (?P<article>The|A|An|Les|La|Le|L'|Il|Lo|Gli|Das|Der|Die|Den|Det|El|Los|Las|Un|Une|Una)$"
)
_SHOWN_IDS = 5


def parse_title(title: str) -> tuple[str, int | None]:
    """Split a title into its text and its year: ``"Toy Story (1995)"`` -> ``("Toy Story", 1995)``.

    The year is the last parenthesised four-digit year (or year range, read as its first year), followed by
    nothing but parenthesised tags; ``("Babylon 5", None)`` for a title without one. Whitespace is collapsed.
    """
    match = _YEAR.search(title)
    if match is None:
        return " ".join(title.split()), None
    text = title[: match.start()] + " " + title[match.end() :]
    return " ".join(text.split()), int(match.group(1))


def _front_article(text: str) -> str:
    """``"American President, The"`` -> ``"The American President"``; ``"Appartement, L'"`` -> ``"L'Appartement"``."""
    match = _ARTICLE.match(text)
    if match is None:
        return text
    article = match.group("article")
    return f"{article}{match.group('body')}" if article.endswith("'") else f"{article} {match.group('body')}"


def _readable(text: str) -> str:
    """The title text with MovieLens's trailing articles put back in front, in the title and each alias."""
    main, bracket, rest = text.partition(" (")
    if not bracket:
        return _front_article(text)
    aliases = re.sub(r"\(([^()]*)\)", lambda m: f"({_front_article(m.group(1))})", "(" + rest)
    return f"{_front_article(main)} {aliases}"


def _parts(title: str, genres: tuple[str, ...]) -> tuple[str, list[str], int | None]:
    """``(title text, genres, year)`` of one item, without MovieLens's placeholders."""
    text, year = parse_title(title)
    if year is None and text.casefold() in PLACEHOLDER_TITLES:
        text = ""
    kept = [g.strip().lower() for g in genres if g.strip() and g.strip().casefold() not in PLACEHOLDER_GENRES]
    return _readable(text), kept, year


def _all_parts(interactions: Interactions) -> list[tuple[str, list[str], int | None]]:
    titles, genres = interactions.item_titles, interactions.item_genres
    if titles is None and genres is None:
        raise ValueError(
            "the interactions carry no item content (item_titles and item_genres are both None): read MovieLens "
            "with its movie file (u.item, movies.dat or movies.csv) beside the ratings, or generate a movie world"
        )
    n = interactions.num_items
    return [_parts(t, g) for t, g in zip(titles or [""] * n, genres or [()] * n, strict=True)]


def _text(title: str, genres: list[str], year: int | None) -> str:
    if not title and not genres:
        return ""
    parts = [title] if title else []
    if genres:
        parts.append("genres: " + ", ".join(genres))
    if year is not None:
        parts.append(f"year: {year}")
    text = parts[0]
    for part in parts[1:]:  # "Airplane! genres: ...", not "Airplane!. genres: ..."
        text += (" " if text.endswith((".", "!", "?")) else ". ") + part
    return text


def empty_content(interactions: Interactions) -> list[int]:
    """Sorted item IDs without usable content: no title text beyond a year, and no genres (placeholders such as
    ml-100k's ``"unknown"`` count as nothing). Their :func:`item_content_texts` entry is ``""``.

    Raises:
        ValueError: The interactions have neither ``item_titles`` nor ``item_genres``.
    """
    return [i for i, (title, genres, _) in enumerate(_all_parts(interactions)) if not title and not genres]


def item_content_texts(interactions: Interactions) -> list[str]:
    """``N`` content texts in item-ID order, e.g. ``"Toy Story. genres: animation, children's, comedy. year: 1995"``.

    Items without usable content (see :func:`empty_content`) get ``""`` and a ``UserWarning`` naming how many and
    the first few item IDs and raw keys.

    Raises:
        ValueError: The interactions have neither ``item_titles`` nor ``item_genres``.
    """
    parts = _all_parts(interactions)
    texts = [_text(*p) for p in parts]
    empty = [i for i, text in enumerate(texts) if not text]
    if empty:
        shown = empty[:_SHOWN_IDS]
        vocab = interactions.item_vocab
        keys = shown if vocab is None else [vocab.values[i] for i in shown]
        titles = [(interactions.item_titles or [""] * interactions.num_items)[i] for i in shown]
        more = ", ..." if len(empty) > len(shown) else ""
        warnings.warn(
            f"{len(empty)} of {interactions.num_items} items without usable content (no title beyond a year, no "
            f"genres): item IDs {shown}{more} (raw keys {keys}, titles {titles}); their text is '' and must not be "
            "embedded as content: empty_content() lists them, for the ID embedding alone when warm, none when cold",
            UserWarning,
            stacklevel=2,
        )
    return texts
