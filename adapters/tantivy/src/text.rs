//! How titles, bodies and queries are cut into words, one way for both: runs of other letters and
//! digits are words, lowercased; a run of CJK characters is indexed as each character and each
//! pair of neighbours (n-grams of 1 and 2), the pair at its first character's position. A query word
//! of several CJK characters is then the phrase of its pairs — found where those characters stand
//! together, never where one of them stands alone ("骑手" is not found in "手机") — which needs no
//! dictionary and finds any word an operator types, as the SQL substring match it replaces did.

use tantivy::tokenizer::{Token, TokenStream, Tokenizer};

/// The name the analysis is registered under in every index.
pub const TOKENIZER: &str = "herald_text";

/// Han (with its extensions and compatibility forms), kana and Hangul: scripts written without
/// spaces between words.
fn is_cjk(c: char) -> bool {
    matches!(c,
        '\u{3040}'..='\u{30FF}' | '\u{3400}'..='\u{4DBF}' | '\u{4E00}'..='\u{9FFF}' | '\u{AC00}'..='\u{D7AF}'
        | '\u{F900}'..='\u{FAFF}' | '\u{20000}'..='\u{2FA1F}')
}

/// A word of a text, as the index and a query both see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Word {
    /// A run of CJK characters.
    Cjk(Vec<char>),
    /// A run of other letters and digits, lowercased.
    Plain(String),
}

/// The pairs of neighbours of a CJK word, in order (none for one character).
pub fn pairs(chars: &[char]) -> impl Iterator<Item = String> + '_ {
    chars.windows(2).map(|w| w.iter().collect())
}

/// The words of `text`, with the byte range each spans.
pub fn words(text: &str) -> Vec<(std::ops::Range<usize>, Word)> {
    let mut found = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        if !c.is_alphanumeric() {
            continue;
        }
        let cjk = is_cjk(c);
        let mut end = start + c.len_utf8();
        while let Some(&(at, next)) = chars.peek() {
            if !next.is_alphanumeric() || is_cjk(next) != cjk {
                break;
            }
            end = at + next.len_utf8();
            chars.next();
        }
        let run = &text[start..end];
        let word = if cjk { Word::Cjk(run.chars().collect()) } else { Word::Plain(run.to_lowercase()) };
        found.push((start..end, word));
    }
    found
}

/// The tokenizer of `title` and `body`.
#[derive(Clone, Default)]
pub struct HeraldTokenizer;

pub struct Tokens {
    tokens: Vec<Token>,
    next: usize,
}

impl Tokenizer for HeraldTokenizer {
    type TokenStream<'a> = Tokens;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> Tokens {
        let mut tokens = Vec::new();
        let mut position = 0;
        let mut push = |range: std::ops::Range<usize>, position: usize, text: String| {
            tokens.push(Token { offset_from: range.start, offset_to: range.end, position, text, position_length: 1 })
        };
        for (range, word) in words(text) {
            match word {
                Word::Plain(word) => {
                    push(range, position, word);
                    position += 1;
                }
                Word::Cjk(chars) => {
                    let mut offset = range.start;
                    for (i, c) in chars.iter().enumerate() {
                        let end = offset + c.len_utf8();
                        push(offset..end, position + i, c.to_string());
                        if let Some(next) = chars.get(i + 1) {
                            push(offset..end + next.len_utf8(), position + i, [*c, *next].iter().collect());
                        }
                        offset = end;
                    }
                    position += chars.len();
                }
            }
        }
        Tokens { tokens, next: 0 }
    }
}

impl TokenStream for Tokens {
    fn advance(&mut self) -> bool {
        self.next += 1;
        self.next <= self.tokens.len()
    }

    fn token(&self) -> &Token {
        &self.tokens[self.next - 1]
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.tokens[self.next - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(text: &str) -> Vec<(usize, String)> {
        let mut stream = HeraldTokenizer.token_stream(text);
        let mut found = Vec::new();
        while stream.advance() {
            let t = stream.token();
            assert_eq!(text[t.offset_from..t.offset_to].to_lowercase(), t.text, "offsets span the token");
            found.push((t.position, t.text.clone()));
        }
        found
    }

    #[test]
    fn cjk_runs_give_characters_and_pairs_and_other_words_are_lowercased() {
        let t = |p, s: &str| (p, s.to_string());
        assert_eq!(
            tokens("骑手App升级, OK!"),
            [t(0, "骑"), t(0, "骑手"), t(1, "手"), t(2, "app"), t(3, "升"), t(3, "升级"), t(4, "级"), t(5, "ok")]
        );
        assert!(tokens(" ，！").is_empty());
        assert_eq!(tokens("Ünïcode 5.2"), [t(0, "ünïcode"), t(1, "5"), t(2, "2")]);
    }

    #[test]
    fn query_words_split_where_the_script_changes() {
        let w: Vec<Word> = words("骑手App 升级").into_iter().map(|(_, w)| w).collect();
        assert_eq!(w, [Word::Cjk(vec!['骑', '手']), Word::Plain("app".into()), Word::Cjk(vec!['升', '级'])]);
        assert_eq!(pairs(&['骑', '手', '端']).collect::<Vec<_>>(), ["骑手", "手端"]);
    }
}
