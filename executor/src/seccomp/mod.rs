//! Seccomp: Docker's default profile, and compiling any OCI seccomp profile to BPF.
//!
//! The filter is built with `seccompiler` (rust-vmm, from Firecracker), pure Rust: neither
//! building nor running rbuild needs libseccomp. Syscall names become numbers for the arch
//! rbuild is built for through the `syscalls` crate; a name the arch does not have is skipped,
//! as runc does with libseccomp.
//!
//! A `seccompiler` filter has one action for the syscalls it matches and one for the rest, so
//! [`compile`] builds one BPF program per action and [`Filter::install`] stacks them. The
//! kernel runs every filter and keeps the result of highest precedence (kill > trap > errno >
//! trace > log > allow), so:
//!
//! - the *base* program returns the profile's default action for every syscall that no rule
//!   names, and allows the ones a rule names (under that rule's argument conditions);
//! - each other action (e.g. `ERRNO(ENOSYS)` for `clone3`) gets a program that returns it under
//!   its rules and allows everything else. Where it matches, the base program allows, so its
//!   action wins; nowhere do two programs return different actions of the same precedence.
//!
//! Limits, compared with runc + libseccomp:
//! - only the native ABI is filtered: a syscall from another ABI (i386 or x32 on x86_64, arm32
//!   on aarch64) kills the process (`seccompiler`'s architecture check), where Docker's profile
//!   also allows those ABIs;
//! - `SCMP_ACT_NOTIFY`, filter flags and listener paths are refused by [`compile`];
//! - argument comparisons are always 64-bit, as libseccomp does on 64-bit arches.

use std::collections::BTreeMap;
use std::str::FromStr;

use nix::errno::Errno;
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction as Action, LinuxSeccompArg, LinuxSeccompOperator as Op,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
    TargetArch,
};
use syscalls::Sysno;

mod profile;

#[cfg(test)]
pub(crate) use profile::docker_default;
pub(crate) use profile::docker_profile;

/// The OCI and `seccompiler` names of the arch rbuild is built for.
#[cfg(target_arch = "x86_64")]
const NATIVE: Option<(Arch, TargetArch)> = Some((Arch::ScmpArchX86_64, TargetArch::x86_64));
#[cfg(target_arch = "aarch64")]
const NATIVE: Option<(Arch, TargetArch)> = Some((Arch::ScmpArchAarch64, TargetArch::aarch64));
#[cfg(target_arch = "riscv64")]
const NATIVE: Option<(Arch, TargetArch)> = Some((Arch::ScmpArchRiscv64, TargetArch::riscv64));
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "riscv64")))]
const NATIVE: Option<(Arch, TargetArch)> = None;

/// A compiled seccomp filter: BPF programs to install in this order (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Filter {
    programs: Vec<BpfProgram>,
}

impl Filter {
    /// Installs the filter on the calling thread (and so on the program it `execve`s).
    ///
    /// Needs `no_new_privs` set, or `CAP_SYS_ADMIN` in the effective set (then install before
    /// dropping capabilities, as runc does without `no_new_privileges`). Makes raw syscalls
    /// only, no allocation: safe between fork and exec.
    pub(crate) fn install(&self) -> Result<(), Errno> {
        for program in &self.programs {
            let prog = libc::sock_fprog {
                // seccompiler refuses programs of BPF_MAXINSNS (4096) instructions or more.
                len: program.len() as u16,
                // seccompiler's sock_filter is #[repr(C)] with the kernel's layout, as libc's.
                filter: program.as_ptr().cast::<libc::sock_filter>().cast_mut(),
            };
            // SAFETY: the kernel copies the program it is pointed to (which lives across the
            // call) and checks it; it keeps no pointer into our memory.
            let rc = unsafe {
                libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0 as libc::c_ulong, &prog)
            };
            Errno::result(rc)?;
        }
        Ok(())
    }

    /// The BPF programs, in the order [`Filter::install`] installs them.
    #[cfg(test)]
    pub(crate) fn programs(&self) -> &[BpfProgram] {
        &self.programs
    }
}

/// For each syscall number, `None` if it is matched whatever its arguments, else the rules
/// (any of which matches).
type Chains = BTreeMap<i64, Option<Vec<SeccompRule>>>;

/// A seccomp profile rbuild cannot turn into a filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp filters are not supported on {0}")]
    Arch(&'static str),
    #[error("the seccomp profile is for {profile}, not for this machine's {machine}")]
    OtherArch { profile: String, machine: String },
    #[error("seccomp flags are not supported: {0}")]
    Flags(String),
    #[error("a seccomp listener (SCMP_ACT_NOTIFY) is not supported")]
    Listener,
    #[error("seccomp action SCMP_ACT_NOTIFY (user-space notification) is not supported")]
    Notify,
    #[error("seccomp errnoRet {0} is out of range (0-4095)")]
    ErrnoRet(u32),
    #[error("argument index {0} is out of range (0-5)")]
    ArgIndex(usize),
    #[error("SCMP_CMP_MASKED_EQ: value {datum:#x} has bits outside mask {mask:#x}")]
    MaskedEq { datum: u64, mask: u64 },
    #[error("seccomp rule for {syscalls}")]
    Rule {
        syscalls: String,
        #[source]
        source: seccompiler::BackendError,
    },
    #[error("seccomp filter")]
    Filter(#[source] seccompiler::BackendError),
}

/// Compiles an OCI seccomp profile to BPF for the arch rbuild is built for.
///
/// As runc does: a syscall name unknown on this arch is skipped; a rule whose action is the
/// default action is ignored; `errnoRet` defaults to `EPERM`; the `args` of one rule must all
/// match, unless an argument index appears twice, in which case any of them matching is enough.
/// Not supported (an error): `SCMP_ACT_NOTIFY`, `flags`, `listenerPath`, a list of
/// `architectures` without this machine's, an argument index over 5.
pub(crate) fn compile(profile: &LinuxSeccomp) -> Result<Filter, SeccompError> {
    let Some((arch, target)) = NATIVE else {
        return Err(SeccompError::Arch(std::env::consts::ARCH));
    };
    if let Some(arches) = profile.architectures()
        && !arches.is_empty()
        && !arches.iter().any(|&a| a == arch || a == Arch::ScmpArchNative)
    {
        return Err(SeccompError::OtherArch { profile: format!("{arches:?}"), machine: arch.to_string() });
    }
    if let Some(flags) = profile.flags()
        && !flags.is_empty()
    {
        return Err(SeccompError::Flags(format!("{flags:?}")));
    }
    if profile.listener_path().is_some() {
        return Err(SeccompError::Listener);
    }
    let default = action(profile.default_action(), profile.default_errno_ret())?;

    let mut base = Chains::new();
    let mut layers: Vec<(SeccompAction, Chains)> = Vec::new();
    for syscall in profile.syscalls().iter().flatten() {
        let act = action(syscall.action(), syscall.errno_ret())?;
        if act == default {
            continue;
        }
        let rules = rules(syscall.args().as_deref().unwrap_or_default()).map_err(|e| match e {
            RuleError::Backend(source) => {
                SeccompError::Rule { syscalls: format!("{:?}", syscall.names()), source }
            }
            RuleError::Profile(e) => e,
        })?;
        let layer = match act {
            SeccompAction::Allow => None,
            _ => Some(match layers.iter().position(|(a, _)| *a == act) {
                Some(i) => i,
                None => {
                    layers.push((act, Chains::new()));
                    layers.len() - 1
                }
            }),
        };
        for name in syscall.names() {
            let Ok(nr) = Sysno::from_str(name) else { continue };
            let nr = i64::from(nr.id());
            if default != SeccompAction::Allow {
                add(&mut base, nr, rules.as_deref());
            }
            if let Some(i) = layer {
                add(&mut layers[i].1, nr, rules.as_deref());
            }
        }
    }

    let mut programs = Vec::with_capacity(layers.len() + 1);
    for (act, chains) in layers {
        programs.push(program(chains, SeccompAction::Allow, act, target)?);
    }
    if default != SeccompAction::Allow {
        programs.push(program(base, default, SeccompAction::Allow, target)?);
    }
    Ok(Filter { programs })
}

fn add(chains: &mut Chains, nr: i64, rules: Option<&[SeccompRule]>) {
    let entry = chains.entry(nr).or_insert_with(|| Some(Vec::new()));
    match (entry.as_mut(), rules) {
        (Some(existing), Some(rules)) => existing.extend_from_slice(rules),
        _ => *entry = None,
    }
}

fn program(
    chains: Chains,
    mismatch: SeccompAction,
    matched: SeccompAction,
    arch: TargetArch,
) -> Result<BpfProgram, SeccompError> {
    let rules = chains.into_iter().map(|(nr, rules)| (nr, rules.unwrap_or_default())).collect();
    let filter = SeccompFilter::new(rules, mismatch, matched, arch).map_err(SeccompError::Filter)?;
    BpfProgram::try_from(filter).map_err(SeccompError::Filter)
}

fn action(action: Action, errno_ret: Option<u32>) -> Result<SeccompAction, SeccompError> {
    let ret = errno_ret.unwrap_or(libc::EPERM as u32);
    if matches!(action, Action::ScmpActErrno | Action::ScmpActTrace) && ret > 4095 {
        return Err(SeccompError::ErrnoRet(ret));
    }
    Ok(match action {
        Action::ScmpActAllow => SeccompAction::Allow,
        Action::ScmpActErrno => SeccompAction::Errno(ret),
        Action::ScmpActKill | Action::ScmpActKillThread => SeccompAction::KillThread,
        Action::ScmpActKillProcess => SeccompAction::KillProcess,
        Action::ScmpActTrap => SeccompAction::Trap,
        Action::ScmpActTrace => SeccompAction::Trace(ret),
        Action::ScmpActLog => SeccompAction::Log,
        Action::ScmpActNotify => {
            return Err(SeccompError::Notify);
        }
    })
}

/// Why one syscall entry's rules could not be made: the profile asks for what rbuild does not
/// do, or seccompiler refuses them.
enum RuleError {
    Profile(SeccompError),
    Backend(seccompiler::BackendError),
}

/// The rules of one OCI syscall entry: `None` if it has no argument condition.
fn rules(args: &[LinuxSeccompArg]) -> Result<Option<Vec<SeccompRule>>, RuleError> {
    if args.is_empty() {
        return Ok(None);
    }
    let conditions = args.iter().map(condition).collect::<Result<Vec<_>, _>>()?;
    // runc's rule: conditions on distinct arguments must all hold; if an argument is compared
    // twice, each condition is a rule of its own (old Docker profiles listed alternatives so).
    let repeated = args.iter().enumerate().any(|(i, a)| args[..i].iter().any(|b| b.index() == a.index()));
    let rules = if repeated {
        conditions.into_iter().map(|c| SeccompRule::new(vec![c])).collect::<Result<Vec<_>, _>>()
    } else {
        SeccompRule::new(conditions).map(|r| vec![r])
    };
    rules.map(Some).map_err(RuleError::Backend)
}

fn condition(arg: &LinuxSeccompArg) -> Result<SeccompCondition, RuleError> {
    let index = u8::try_from(arg.index())
        .ok()
        .filter(|&i| i <= 5)
        .ok_or(RuleError::Profile(SeccompError::ArgIndex(arg.index())))?;
    let (op, value) = match arg.op() {
        Op::ScmpCmpNe => (SeccompCmpOp::Ne, arg.value()),
        Op::ScmpCmpLt => (SeccompCmpOp::Lt, arg.value()),
        Op::ScmpCmpLe => (SeccompCmpOp::Le, arg.value()),
        Op::ScmpCmpEq => (SeccompCmpOp::Eq, arg.value()),
        Op::ScmpCmpGe => (SeccompCmpOp::Ge, arg.value()),
        Op::ScmpCmpGt => (SeccompCmpOp::Gt, arg.value()),
        // OCI: `(arg & value) == valueTwo`. seccompiler compares with `valueTwo & value`, which
        // differs when valueTwo has bits outside the mask (then libseccomp never matches).
        Op::ScmpCmpMaskedEq => {
            let (mask, datum) = (arg.value(), arg.value_two().unwrap_or(0));
            if datum & !mask != 0 {
                return Err(RuleError::Profile(SeccompError::MaskedEq { datum, mask }));
            }
            (SeccompCmpOp::MaskedEq(mask), datum)
        }
    };
    SeccompCondition::new(index, SeccompCmpArgLen::Qword, op, value).map_err(RuleError::Backend)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use seccompiler::sock_filter;

    use super::*;
    use crate::caps::{self, CapSet};

    const RET_ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
    const RET_EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
    const RET_ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;

    fn nr(name: &str) -> u32 {
        Sysno::from_str(name).unwrap().id() as u32
    }

    /// Runs one BPF program on a `struct seccomp_data`, as the kernel would (only the
    /// instructions seccompiler emits).
    fn run(program: &[sock_filter], data: &[u8; 64]) -> u32 {
        let mut a = 0u32;
        let mut pc = 0;
        loop {
            let insn = &program[pc];
            pc += 1;
            let jump = |taken: bool| usize::from(if taken { insn.jt } else { insn.jf });
            match insn.code {
                0x20 => a = u32::from_le_bytes(data[insn.k as usize..][..4].try_into().unwrap()),
                0x54 => a &= insn.k,
                0x05 => pc += insn.k as usize,
                0x15 => pc += jump(a == insn.k),
                0x25 => pc += jump(a > insn.k),
                0x35 => pc += jump(a >= insn.k),
                0x06 => return insn.k,
                code => panic!("unexpected BPF instruction {code:#x}"),
            }
        }
    }

    /// What the kernel returns for a syscall under `filter`: every program runs, newest first,
    /// and a result replaces the one so far only if its action has strictly higher precedence.
    fn eval_arch(filter: &Filter, arch: u32, nr: u32, args: &[u64]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        for (i, arg) in args.iter().enumerate() {
            data[16 + 8 * i..][..8].copy_from_slice(&arg.to_le_bytes());
        }
        let action = |ret: u32| (ret & 0xffff_0000) as i32;
        let mut result = RET_ALLOW;
        for program in filter.programs().iter().rev() {
            let ret = run(program, &data);
            if action(ret) < action(result) {
                result = ret;
            }
        }
        result
    }

    fn native_audit_arch() -> u32 {
        // AUDIT_ARCH_*: EM_* | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE.
        let machine = if cfg!(target_arch = "x86_64") { 62 } else { 183 };
        machine | 0x8000_0000 | 0x4000_0000
    }

    fn eval(filter: &Filter, name: &str, args: &[u64]) -> u32 {
        eval_arch(filter, native_audit_arch(), nr(name), args)
    }

    /// The names a profile allows unconditionally.
    fn allowed(profile: &LinuxSeccomp) -> Vec<&str> {
        let syscalls = profile.syscalls().as_deref().unwrap_or_default();
        syscalls
            .iter()
            .filter(|s| s.action() == Action::ScmpActAllow && s.args().is_none())
            .flat_map(|s| s.names().iter().map(String::as_str))
            .collect()
    }

    #[test]
    fn docker_default_allows_and_denies_as_docker() {
        let profile = docker_default();
        assert_eq!(profile.default_action(), Action::ScmpActErrno);
        assert_eq!(profile.default_errno_ret(), Some(1));
        let allowed = allowed(&profile);
        for name in ["read", "write", "execve", "openat", "ptrace", "chroot", "seccomp", "capset", "setuid"] {
            assert!(allowed.contains(&name), "{name} should be allowed");
        }
        if cfg!(target_arch = "x86_64") {
            assert!(allowed.contains(&"arch_prctl"));
        }
        for name in [
            "mount",
            "umount2",
            "unshare",
            "setns",
            "keyctl",
            "add_key",
            "request_key",
            "bpf",
            "kexec_load",
            "init_module",
            "reboot",
            "swapon",
            "pivot_root",
            "open_by_handle_at",
            "clone",
            "clone3",
            "personality",
            "socket",
            "sethostname",
            "perf_event_open",
            "userfaultfd",
        ] {
            assert!(!allowed.contains(&name), "{name} should not be allowed unconditionally");
        }
        let syscalls = profile.syscalls().as_deref().unwrap();
        let clone3 = syscalls.iter().find(|s| s.names() == &["clone3"]).unwrap();
        assert_eq!((clone3.action(), clone3.errno_ret()), (Action::ScmpActErrno, Some(38)));
        let clone = syscalls.iter().find(|s| s.names() == &["clone"]).unwrap();
        let arg = clone.args().as_deref().unwrap()[0];
        assert_eq!(
            (arg.index(), arg.op(), arg.value(), arg.value_two()),
            (0, Op::ScmpCmpMaskedEq, 2114060288, Some(0))
        );
    }

    #[test]
    fn capabilities_unlock_syscalls_as_in_docker() {
        let admin =
            CapSet::from_bits(CapSet::DOCKER_DEFAULT.bits() | 1 << caps::number("SYS_ADMIN").unwrap());
        let profile = docker_profile(admin);
        let unlocked = allowed(&profile);
        for name in ["mount", "unshare", "setns", "clone", "clone3", "bpf"] {
            assert!(unlocked.contains(&name), "{name} should be allowed with CAP_SYS_ADMIN");
        }
        assert!(!profile.syscalls().as_deref().unwrap().iter().any(|s| s.action() == Action::ScmpActErrno));
        let filter = compile(&profile).unwrap();
        assert_eq!(eval(&filter, "clone3", &[]), RET_ALLOW);
        assert_eq!(eval(&filter, "clone", &[libc::CLONE_NEWUSER as u64]), RET_ALLOW);

        let no_caps = docker_profile(CapSet::EMPTY);
        let none = allowed(&no_caps);
        assert!(!none.contains(&"chroot"));
        assert!(none.contains(&"ptrace"));
    }

    #[test]
    fn docker_default_compiles_to_the_expected_decisions() {
        let filter = compile(&docker_default()).unwrap();
        // The ENOSYS program for clone3, then the base program.
        assert_eq!(filter.programs().len(), 2);
        assert!(filter.programs().iter().all(|p| p.len() < 4096));

        for name in ["read", "write", "execve", "exit_group", "getpid", "openat", "ptrace", "chroot"] {
            assert_eq!(eval(&filter, name, &[]), RET_ALLOW, "{name}");
        }
        for name in
            ["mount", "umount2", "unshare", "setns", "keyctl", "add_key", "bpf", "kexec_load", "reboot"]
        {
            assert_eq!(eval(&filter, name, &[]), RET_EPERM, "{name}");
        }
        assert_eq!(eval(&filter, "clone3", &[]), RET_ENOSYS);

        let sigchld = libc::SIGCHLD as u64;
        let thread =
            (libc::CLONE_VM | libc::CLONE_FS | libc::CLONE_FILES | libc::CLONE_SIGHAND | libc::CLONE_THREAD)
                as u64;
        assert_eq!(eval(&filter, "clone", &[sigchld]), RET_ALLOW);
        assert_eq!(eval(&filter, "clone", &[thread]), RET_ALLOW);
        assert_eq!(eval(&filter, "clone", &[1 << 40 | sigchld]), RET_ALLOW);
        for ns in [libc::CLONE_NEWUSER, libc::CLONE_NEWNS, libc::CLONE_NEWNET, libc::CLONE_NEWCGROUP] {
            assert_eq!(eval(&filter, "clone", &[ns as u64 | sigchld]), RET_EPERM, "{ns:#x}");
        }

        for (family, expected) in [
            (1, RET_ALLOW),
            (2, RET_ALLOW),
            (37, RET_ALLOW),
            (38, RET_EPERM),
            (39, RET_ALLOW),
            (40, RET_EPERM),
            (41, RET_ALLOW),
        ] {
            assert_eq!(eval(&filter, "socket", &[family, 1, 0]), expected, "family {family}");
        }
        for (persona, expected) in [
            (0, RET_ALLOW),
            (8, RET_ALLOW),
            (0x20000, RET_ALLOW),
            (0x20008, RET_ALLOW),
            (0xffffffff, RET_ALLOW),
        ] {
            assert_eq!(eval(&filter, "personality", &[persona]), expected, "persona {persona:#x}");
        }
        // ADDR_NO_RANDOMIZE, and a persona with garbage above 32 bits.
        assert_eq!(eval(&filter, "personality", &[0x0040000]), RET_EPERM);
        assert_eq!(eval(&filter, "personality", &[1 << 32]), RET_EPERM);

        // A number no arch has, an x32 syscall, another arch (i386): denied or killed.
        assert_eq!(eval_arch(&filter, native_audit_arch(), 4000, &[]), RET_EPERM);
        assert_eq!(eval_arch(&filter, native_audit_arch(), 0x4000_0000 | nr("read"), &[]), RET_EPERM);
        assert_eq!(eval_arch(&filter, 3 | 0x4000_0000, nr("read"), &[]), libc::SECCOMP_RET_KILL_PROCESS);
    }

    fn profile(json: &str) -> LinuxSeccomp {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn compiles_every_operator_and_action() {
        let filter = compile(&profile(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5,
                 "args": [{"index": 0, "value": 3, "op": "SCMP_CMP_NE"},
                          {"index": 2, "value": 100, "op": "SCMP_CMP_GE"}]},
                {"names": ["write"], "action": "SCMP_ACT_ERRNO",
                 "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_LE"}]},
                {"names": ["write"], "action": "SCMP_ACT_ERRNO",
                 "args": [{"index": 2, "value": 4294967296, "op": "SCMP_CMP_GT"}]},
                {"names": ["close"], "action": "SCMP_ACT_KILL_PROCESS",
                 "args": [{"index": 0, "value": 1000, "op": "SCMP_CMP_EQ"}]},
                {"names": ["dup"], "action": "SCMP_ACT_TRAP",
                 "args": [{"index": 0, "value": 10, "op": "SCMP_CMP_LT"}]},
                {"names": ["dup3"], "action": "SCMP_ACT_LOG",
                 "args": [{"index": 2, "value": 524288, "valueTwo": 524288, "op": "SCMP_CMP_MASKED_EQ"}]},
                {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["no_such_syscall", "gettid"], "action": "SCMP_ACT_KILL"}
            ]}"#,
        ))
        .unwrap();
        let errno = |e: u32| libc::SECCOMP_RET_ERRNO | e;
        // All conditions of one rule must hold.
        assert_eq!(eval(&filter, "read", &[4, 0, 100]), errno(5));
        assert_eq!(eval(&filter, "read", &[3, 0, 100]), RET_ALLOW);
        assert_eq!(eval(&filter, "read", &[4, 0, 99]), RET_ALLOW);
        // Any rule may match; errnoRet defaults to EPERM; 64-bit comparisons.
        assert_eq!(eval(&filter, "write", &[1, 0, 10]), RET_EPERM);
        assert_eq!(eval(&filter, "write", &[2, 0, 10]), RET_ALLOW);
        assert_eq!(eval(&filter, "write", &[2, 0, 1 << 32]), RET_ALLOW);
        assert_eq!(eval(&filter, "write", &[2, 0, 1 << 32 | 1]), RET_EPERM);
        assert_eq!(eval(&filter, "close", &[1000]), libc::SECCOMP_RET_KILL_PROCESS);
        assert_eq!(eval(&filter, "close", &[1000 | 1 << 32]), RET_ALLOW);
        assert_eq!(eval(&filter, "dup", &[9]), libc::SECCOMP_RET_TRAP);
        assert_eq!(eval(&filter, "dup", &[10]), RET_ALLOW);
        assert_eq!(eval(&filter, "dup3", &[0, 1, libc::O_CLOEXEC as u64]), libc::SECCOMP_RET_LOG);
        assert_eq!(eval(&filter, "dup3", &[0, 1, 0]), RET_ALLOW);
        assert_eq!(eval(&filter, "gettid", &[]), libc::SECCOMP_RET_KILL_THREAD);
        assert_eq!(eval(&filter, "getpid", &[]), RET_ALLOW);
    }

    #[test]
    fn repeated_argument_index_means_any() {
        // As runc: two conditions on argument 0 are alternatives, not both required.
        let filter = compile(&profile(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
                          {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}]}"#,
        ))
        .unwrap();
        assert_eq!(eval(&filter, "personality", &[0]), RET_ALLOW);
        assert_eq!(eval(&filter, "personality", &[8]), RET_ALLOW);
        assert_eq!(eval(&filter, "personality", &[9]), RET_EPERM);
        assert_eq!(eval(&filter, "read", &[]), RET_EPERM);
    }

    #[test]
    fn unconditional_rule_wins_over_conditional_ones() {
        let filter = compile(&profile(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 13, "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
                {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["write"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}"#,
        ))
        .unwrap();
        assert_eq!(filter.programs().len(), 1);
        assert_eq!(eval(&filter, "read", &[5]), RET_ALLOW);
        assert_eq!(eval(&filter, "write", &[]), libc::SECCOMP_RET_ERRNO | 13);
    }

    #[test]
    fn unsupported_profiles_are_errors() {
        let base = r#""defaultAction": "SCMP_ACT_ERRNO""#;
        for (json, expect) in [
            (
                format!(r#"{{{base}, "syscalls": [{{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}}]}}"#),
                "NOTIFY",
            ),
            (format!(r#"{{{base}, "flags": ["SECCOMP_FILTER_FLAG_LOG"]}}"#), "flags"),
            (format!(r#"{{{base}, "listenerPath": "/run/agent.sock"}}"#), "listener"),
            (format!(r#"{{{base}, "architectures": ["SCMP_ARCH_S390X"]}}"#), "not for this machine"),
            (
                format!(
                    r#"{{{base}, "syscalls": [{{"names": ["read"], "action": "SCMP_ACT_ALLOW",
                        "args": [{{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}}]}}]}}"#
                ),
                "index 6",
            ),
            (
                format!(
                    r#"{{{base}, "syscalls": [{{"names": ["read"], "action": "SCMP_ACT_ALLOW",
                        "args": [{{"index": 0, "value": 1, "valueTwo": 2, "op": "SCMP_CMP_MASKED_EQ"}}]}}]}}"#
                ),
                "outside mask",
            ),
            (format!(r#"{{{base}, "defaultErrnoRet": 70000}}"#), "out of range"),
        ] {
            let err = hostutil::errors::one_line(&compile(&profile(&json)).unwrap_err());
            assert!(err.contains(expect), "{json}: {err}");
        }
        // Docker's own multi-arch list is accepted (only the native ABI is filtered).
        let arches = if cfg!(target_arch = "x86_64") {
            r#"["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]"#
        } else {
            r#"["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]"#
        };
        compile(&profile(&format!(r#"{{{base}, "architectures": {arches}}}"#))).unwrap();
    }

    #[test]
    fn default_allow_without_rules_is_no_filter() {
        let filter = compile(&profile(r#"{"defaultAction": "SCMP_ACT_ALLOW"}"#)).unwrap();
        assert!(filter.programs().is_empty());
        let filter = compile(&profile(r#"{"defaultAction": "SCMP_ACT_KILL_PROCESS"}"#)).unwrap();
        assert_eq!(eval(&filter, "read", &[]), libc::SECCOMP_RET_KILL_PROCESS);
    }

    #[test]
    fn profile_travels_as_oci_json() {
        let profile = docker_default();
        let json = serde_json::to_value(&profile).unwrap();
        assert_eq!(json["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(json["defaultErrnoRet"], 1);
        let clone = json["syscalls"].as_array().unwrap().iter().find(|s| s["names"][0] == "clone").unwrap();
        assert_eq!(
            clone["args"][0],
            serde_json::json!({"index": 0, "value": 2114060288u64, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"})
        );
        let back: LinuxSeccomp = serde_json::from_value(json).unwrap();
        assert_eq!(back, profile);
        assert_eq!(compile(&back).unwrap(), compile(&profile).unwrap());
    }

    #[test]
    fn compile_is_fast() {
        let profile = docker_default();
        let mut best = Duration::MAX;
        for _ in 0..50 {
            let start = Instant::now();
            let filter = compile(&profile).unwrap();
            best = best.min(start.elapsed());
            std::hint::black_box(filter);
        }
        let instructions: usize = compile(&profile).unwrap().programs().iter().map(Vec::len).sum();
        eprintln!("compile(docker_default()): {best:?}, {instructions} BPF instructions");
        assert!(best < Duration::from_millis(20), "{best:?}");
    }

    /// In a forked child: checks that would all pass without the filter, then installs it (if
    /// `install`) and checks the filter's decisions on real syscalls. Returns the exit code:
    /// 0, or the number of the first check that failed.
    fn child_checks(filter: &Filter, install: bool) -> i32 {
        let missing = c"/nonexistent-rbuild-seccomp-test";
        // SAFETY: the test harness is multi-threaded, so the child makes raw syscalls only (as
        // install does) and leaves through _exit; every pointer passed is a valid C string or
        // null where the kernel accepts null.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", Errno::last());
        if pid == 0 {
            // SAFETY: as above: the child only makes raw syscalls and leaves through _exit.
            unsafe {
                let errno = || *libc::__errno_location();
                let check = |ok: bool, code: i32| {
                    if !ok {
                        libc::_exit(code)
                    }
                };
                let mount = || {
                    libc::mount(c"none".as_ptr(), missing.as_ptr(), c"tmpfs".as_ptr(), 0, std::ptr::null())
                };
                let clone3 = || libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0usize);
                let keyctl = || libc::syscall(libc::SYS_keyctl, -1i64, 0, 0, 0, 0);
                // Without a filter these fail for other reasons than EPERM / ENOSYS.
                check(mount() == -1 && errno() == libc::ENOENT, 2);
                check(clone3() == -1 && errno() == libc::EINVAL, 3);
                check(keyctl() == -1 && errno() != libc::EPERM, 4);
                check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) == 0, 5);
                if install {
                    check(filter.install().is_ok(), 6);
                }
                check(libc::unshare(libc::CLONE_NEWUSER) == -1 && errno() == libc::EPERM, 7);
                check(mount() == -1 && errno() == libc::EPERM, 8);
                check(clone3() == -1 && errno() == libc::ENOSYS, 9);
                check(keyctl() == -1 && errno() == libc::EPERM, 10);
                check(libc::getpid() > 0, 11);
                check(libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM, 0) == -1 && errno() == libc::EPERM, 12);
                check(libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0) >= 0, 13);
                check(libc::personality(0xffffffff) >= 0, 14);
                check(
                    libc::personality(libc::ADDR_NO_RANDOMIZE as libc::c_ulong) == -1
                        && errno() == libc::EPERM,
                    15,
                );
                // CLONE_NEWNS with CLONE_FS is EINVAL without the filter, EPERM with it.
                let flags = (libc::CLONE_NEWNS | libc::CLONE_FS | libc::SIGCHLD) as libc::c_ulong;
                check(libc::syscall(libc::SYS_clone, flags, 0, 0, 0, 0) == -1 && errno() == libc::EPERM, 16);
                libc::_exit(0)
            }
        }
        let mut status = 0;
        // SAFETY: waits for our own child; `status` outlives the call.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status), "child status {status:#x}");
        libc::WEXITSTATUS(status)
    }

    #[test]
    fn installed_filter_denies_as_docker() {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root");
            return;
        }
        let filter = compile(&docker_default()).unwrap();
        assert_eq!(child_checks(&filter, true), 0, "check failed in the filtered child");
        // The same checks fail without the filter: they do test it.
        assert_eq!(child_checks(&filter, false), 7);
    }
}
