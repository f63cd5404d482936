//! Did-you-mean: the nearest of some names to a word, for every "unknown key / service /
//! event" error of the config. A leaf: the loader, the validator and the alert sinks use it.

/// The candidate closest to `word` by edit distance (ties go to the longest common prefix),
/// if it is close enough to be what was meant.
pub fn nearest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let common = |c: &str| {
        word.chars()
            .zip(c.chars())
            .take_while(|(a, b)| a == b)
            .count()
    };
    let best = candidates
        .iter()
        .map(|c| {
            (
                strsim::levenshtein(word, c),
                std::cmp::Reverse(common(c)),
                *c,
            )
        })
        .min()?;
    let best = (best.0, best.2);
    let limit = (word.len().max(best.1.len()) / 3).max(2);
    (best.0 <= limit || best.1.starts_with(word) || word.starts_with(best.1)).then_some(best.1)
}
