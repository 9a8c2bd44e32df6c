//! Tiny shell-style glob matcher (`*` any run, `?` one char) for test names.

/// True when `name` matches `pattern` (`*` matches any run of characters,
/// including `/`; `?` matches exactly one character).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// True when the pattern contains glob metacharacters.
pub fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_and_wildcards() {
        assert!(glob_match("memory/sparse", "memory/sparse"));
        assert!(!glob_match("memory/sparse", "memory/sparse2"));
        assert!(glob_match("memory/*", "memory/sparse"));
        assert!(!glob_match("memory/*", "files/pipe"));
        assert!(glob_match("*", "a/b"));
        assert!(glob_match("*/pipe*", "files/pipe_big"));
        assert!(glob_match("f?les/*", "files/x"));
        assert!(!glob_match("f?les/*", "fles/x"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
        assert!(glob_match("", ""));
        assert!(!glob_match("", "x"));
    }
}
