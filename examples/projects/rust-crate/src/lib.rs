//! A tiny crate for the CI example: `cargo test` of it runs in hardened mode.

/// Sum of the even numbers in `xs`.
pub fn sum_even(xs: &[i64]) -> i64 {
    xs.iter().filter(|x| *x % 2 == 0).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_only_even_numbers() {
        assert_eq!(sum_even(&[1, 2, 3, 4]), 6);
        assert_eq!(sum_even(&[]), 0);
    }
}
