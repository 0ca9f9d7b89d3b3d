//! `forklet completion bash|zsh|fish`: the shell's completion script, made
//! from the same clap definitions as `--help`, so it cannot fall behind.

/// The script for `shell`, completing `forklet` as `cli` defines it.
pub fn script(shell: clap_complete::Shell, mut cli: clap::Command) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cli, "forklet", &mut out);
    out
}
