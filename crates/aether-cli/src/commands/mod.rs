//! One module per `aether` verb; each has `Args` (clap) and `run`.

pub mod adapt;
pub mod baseline;
pub mod bench;
pub mod bench_head;
pub mod classify;
pub mod convert;
pub mod demo;
pub mod eval;
pub mod features;
pub mod gate;
pub mod init;
pub mod inspect;
pub mod replay;
pub mod serve;
pub mod simulate;
pub mod train;

/// `n` and a noun, pluralised unless `n` is 1 (`1 epoch`, `3 epochs`, `2 classes`,
/// `5 entries`).
pub(crate) fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        return format!("1 {noun}");
    }
    if noun.ends_with('s') {
        format!("{n} {noun}es")
    } else if let Some(stem) = noun.strip_suffix("ry") {
        format!("{n} {stem}ries")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn plural_adds_s_unless_one() {
        assert_eq!(super::plural(1, "epoch"), "1 epoch");
        assert_eq!(super::plural(0, "frame"), "0 frames");
        assert_eq!(super::plural(2, "recording"), "2 recordings");
        assert_eq!(super::plural(4, "class"), "4 classes");
        assert_eq!(super::plural(5, "entry"), "5 entries");
    }
}
