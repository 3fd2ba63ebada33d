//! `hydrenv diff`: a unified diff of two redacted renders, by the `similar` crate.

/// Unified diff of two texts with 3 lines of context under `--- old_name` / `+++ new_name`
/// headers; empty when they are equal.
pub fn unified(old: &str, new: &str, old_name: &str, new_name: &str) -> String {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(old_name, new_name)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::unified;

    #[test]
    fn shows_changed_lines_with_context() {
        let old = "a\nb\nc\nd\n";
        let new = "a\nb\nC\nd\ne\n";
        assert_eq!(
            unified(old, new, "old", "new"),
            "--- old\n+++ new\n@@ -1,4 +1,5 @@\n a\n b\n-c\n+C\n d\n+e\n"
        );
        assert_eq!(unified(old, old, "x", "y"), "");
    }

    #[test]
    fn separates_distant_changes_into_hunks_and_diffs_against_nothing() {
        let old: String = (1..=20).map(|n| format!("{n}\n")).collect();
        let new = old
            .replacen("\n2\n", "\ntwo\n", 1)
            .replace("\n19\n", "\nnineteen\n");
        assert_eq!(
            unified(&old, &new, "old", "new"),
            "--- old\n+++ new\n@@ -1,5 +1,5 @@\n 1\n-2\n+two\n 3\n 4\n 5\n\
             @@ -16,5 +16,5 @@\n 16\n 17\n 18\n-19\n+nineteen\n 20\n"
        );
        assert_eq!(
            unified("", "a\nb\n", "current", "fresh render"),
            "--- current\n+++ fresh render\n@@ -0,0 +1,2 @@\n+a\n+b\n"
        );
    }
}
