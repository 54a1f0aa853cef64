//! Seccomp: Docker's default profile, and compiling any OCI seccomp profile to BPF.
//!
//! The filter is built with `seccompiler` (rust-vmm, from Firecracker), pure Rust: neither
//! building nor running rbuild needs libseccomp. Syscall names become numbers through the
//! `syscalls` crate's table of each ABI the filter covers; a name an ABI does not have is
//! skipped there, as runc does with libseccomp.
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
//! On x86_64 each program covers two ABIs, as Docker's profile does with libseccomp (which
//! lists x86_64, x86 and x32): the native one, and i386, which the kernel runs natively for
//! 32-bit processes (`linux/386` images). seccompiler builds one program per arch and knows
//! only 64-bit ones, so [`link`] joins a program built from the same rules with i386's syscall
//! numbers (its arch check retargeted, see [`retarget`]) behind a dispatch on
//! `seccomp_data.arch`.
//!
//! Limits, compared with runc + libseccomp:
//! - ABIs covered: x86_64 and i386 on x86_64, the native one elsewhere. Any other ABI kills the
//!   process: x32 on x86_64 (its syscalls come with x86_64's arch and bit 30 set in the number;
//!   libseccomp does the same when x32 is not in the profile) and arm32 on aarch64, which
//!   Docker's profile also allows. i386 is covered whatever `architectures` the profile lists;
//! - `SCMP_ACT_NOTIFY`, filter flags and listener paths are refused by [`compile`];
//! - argument comparisons are 64-bit on the 64-bit ABIs and on the low 32 bits for i386, as
//!   libseccomp does (the values' upper bits are dropped there);
//! - a program may have at most 4096 instructions (the kernel's `BPF_MAXINSNS`), all the
//!   programs together 32768 (its `MAX_INSNS_PER_PATH`). seccompiler spends 5 per syscall
//!   allowed outright, so on x86_64 Docker's profile takes about 3500 in its base program
//!   (1600 for x86_64, 1850 for i386), and 3900 with every capability: a profile that allows
//!   much more is refused, where libseccomp's smaller programs would fit.

use std::collections::BTreeMap;
use std::str::FromStr;

use nix::errno::Errno;
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction as Action, LinuxSeccompArg, LinuxSeccompOperator as Op,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
    TargetArch, sock_filter,
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

/// `AUDIT_ARCH_*` (linux/audit.h): `EM_*` | `__AUDIT_ARCH_64BIT` | `__AUDIT_ARCH_LE`, the arch
/// the kernel reports in `seccomp_data.arch`.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH_I386: u32 = 3 | 0x4000_0000;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH_AARCH64: u32 = 183 | 0x8000_0000 | 0x4000_0000;
#[cfg(target_arch = "riscv64")]
const AUDIT_ARCH_RISCV64: u32 = 243 | 0x8000_0000 | 0x4000_0000;

/// The kernel's limits: instructions in one program (`BPF_MAXINSNS`), and in all the programs
/// a syscall runs, counting 4 more per program (`MAX_INSNS_PER_PATH`, kernel/seccomp.c).
const MAX_PROGRAM_LEN: usize = libc::BPF_MAXINSNS as usize;
const MAX_PATH_LEN: usize = 32768;
const PATH_COST_PER_PROGRAM: usize = 4;

/// Offsets in `struct seccomp_data`.
#[cfg(target_arch = "x86_64")]
const SECCOMP_DATA_NR: u32 = 0;
const SECCOMP_DATA_ARCH: u32 = 4;

/// One syscall ABI a filter covers.
struct Abi {
    /// What the kernel reports in `seccomp_data.arch` for this ABI's syscalls.
    audit_arch: u32,
    /// The syscall number of a name, if the ABI has that syscall.
    number: fn(&str) -> Option<i64>,
    /// How much of an argument the ABI's syscalls read.
    arg_len: SeccompCmpArgLen,
}

/// The ABIs a filter covers, the native one first.
#[cfg(target_arch = "x86_64")]
const ABIS: &[Abi] = &[
    Abi { audit_arch: AUDIT_ARCH_X86_64, number: native_number, arg_len: SeccompCmpArgLen::Qword },
    // The kernel passes an i386 syscall's arguments as the 64-bit registers it found, and
    // only the compat syscall reads just their low halves: a 64-bit process that makes an
    // i386 syscall (`int $0x80`) can set the upper ones. Comparing the low 32 bits only, as
    // libseccomp does for 32-bit ABIs, judges what the syscall reads. With 64-bit comparisons,
    // `socket(1 << 32 | AF_VSOCK)` would pass as a family above 40.
    Abi { audit_arch: AUDIT_ARCH_I386, number: i386_number, arg_len: SeccompCmpArgLen::Dword },
];
#[cfg(target_arch = "aarch64")]
const ABIS: &[Abi] =
    &[Abi { audit_arch: AUDIT_ARCH_AARCH64, number: native_number, arg_len: SeccompCmpArgLen::Qword }];
#[cfg(target_arch = "riscv64")]
const ABIS: &[Abi] =
    &[Abi { audit_arch: AUDIT_ARCH_RISCV64, number: native_number, arg_len: SeccompCmpArgLen::Qword }];
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "riscv64")))]
const ABIS: &[Abi] = &[];

fn native_number(name: &str) -> Option<i64> {
    Sysno::from_str(name).ok().map(|nr| i64::from(nr.id()))
}

#[cfg(target_arch = "x86_64")]
fn i386_number(name: &str) -> Option<i64> {
    syscalls::x86::Sysno::from_str(name).ok().map(|nr| i64::from(nr.id()))
}

/// Kills the process if the syscall number has bit 30 (x32's `__X32_SYSCALL_BIT`) or any
/// higher bit set, unless it is -1 (no syscall: what a tracer sets to skip one). [`link`] puts
/// it before the native program, which then sees x86_64's syscalls only.
#[cfg(target_arch = "x86_64")]
const X32_GUARD: &[sock_filter] = &[
    insn(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, SECCOMP_DATA_NR),
    insn(libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K, 0, 2, 0x4000_0000),
    insn(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, 1, 0, u32::MAX),
    insn(libc::BPF_RET | libc::BPF_K, 0, 0, libc::SECCOMP_RET_KILL_PROCESS),
];
#[cfg(not(target_arch = "x86_64"))]
const X32_GUARD: &[sock_filter] = &[];

const fn insn(code: u32, jt: u8, jf: u8, k: u32) -> sock_filter {
    // BPF opcodes fit in 16 bits; libc spells them as u32.
    sock_filter { code: code as u16, jt, jf, k }
}

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
                // compile refuses programs of more than BPF_MAXINSNS (4096) instructions.
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
    #[error(
        "the seccomp profile compiles to {len} BPF instructions, over the kernel's limit of {limit}{}",
        if *.per_program { " per program" } else { " for all programs together" }
    )]
    TooLong { len: usize, limit: usize, per_program: bool },
    #[error(
        "seccompiler's program does not start with the architecture check rbuild retargets to other ABIs"
    )]
    ArchCheck,
}

/// Compiles an OCI seccomp profile to BPF for the arch rbuild is built for.
///
/// As runc does: a syscall name unknown on an ABI is skipped there; a rule whose action is the
/// default action is ignored; `errnoRet` defaults to `EPERM`; the `args` of one rule must all
/// match, unless an argument index appears twice, in which case any of them matching is enough.
/// On x86_64 the filter applies the profile to i386 syscalls too (see the module doc).
/// Not supported (an error): `SCMP_ACT_NOTIFY`, `flags`, `listenerPath`, a list of
/// `architectures` without this machine's, an argument index over 5, a filter over the
/// kernel's size limits.
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

    // The chains of the base program and of each other action's, one per ABI of ABIS.
    let mut base = vec![Chains::new(); ABIS.len()];
    let mut layers: Vec<(SeccompAction, Vec<Chains>)> = Vec::new();
    for syscall in profile.syscalls().iter().flatten() {
        let act = action(syscall.action(), syscall.errno_ret())?;
        if act == default {
            continue;
        }
        let layer = match act {
            SeccompAction::Allow => None,
            _ => Some(match layers.iter().position(|(a, _)| *a == act) {
                Some(i) => i,
                None => {
                    layers.push((act, vec![Chains::new(); ABIS.len()]));
                    layers.len() - 1
                }
            }),
        };
        for (i, abi) in ABIS.iter().enumerate() {
            let args = syscall.args().as_deref().unwrap_or_default();
            let rules = rules(args, abi.arg_len.clone()).map_err(|e| match e {
                RuleError::Backend(source) => {
                    SeccompError::Rule { syscalls: format!("{:?}", syscall.names()), source }
                }
                RuleError::Profile(e) => e,
            })?;
            for nr in syscall.names().iter().filter_map(|name| (abi.number)(name)) {
                if default != SeccompAction::Allow {
                    add(&mut base[i], nr, rules.as_deref());
                }
                if let Some(l) = layer {
                    add(&mut layers[l].1[i], nr, rules.as_deref());
                }
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
    let path: usize = programs.iter().map(|p| p.len() + PATH_COST_PER_PROGRAM).sum();
    if path > MAX_PATH_LEN {
        return Err(SeccompError::TooLong { len: path, limit: MAX_PATH_LEN, per_program: false });
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

/// One program over every ABI of [`ABIS`], `chains` holding each one's syscalls: `matched` for
/// the syscalls the chains match, `mismatch` for the others.
fn program(
    chains: Vec<Chains>,
    mismatch: SeccompAction,
    matched: SeccompAction,
    target: TargetArch,
) -> Result<BpfProgram, SeccompError> {
    let programs = chains
        .into_iter()
        .zip(ABIS)
        .map(|(chains, abi)| {
            let rules = chains.into_iter().map(|(nr, rules)| (nr, rules.unwrap_or_default())).collect();
            let filter = SeccompFilter::new(rules, mismatch.clone(), matched.clone(), target)
                .map_err(SeccompError::Filter)?;
            let mut program = BpfProgram::try_from(filter).map_err(SeccompError::Filter)?;
            retarget(&mut program, ABIS[0].audit_arch, abi.audit_arch)?;
            Ok((abi.audit_arch, program))
        })
        .collect::<Result<Vec<_>, SeccompError>>()?;
    link(programs)
}

/// Makes a program that seccompiler built for the native arch (`native`) check for
/// `audit_arch` instead: the same rules then apply to another ABI's syscalls, numbered by
/// that ABI's table.
///
/// seccompiler 0.5 starts every program with its architecture check (`LD [4]`, that is
/// `seccomp_data.arch`; `JEQ <AUDIT_ARCH_*>, 1, 0`; `RET KILL_PROCESS`) and nothing else in it
/// depends on the arch: the rest loads the syscall number and the arguments at fixed offsets of
/// `struct seccomp_data`, which has one layout for all of a kernel's ABIs. So only the second
/// instruction's constant changes. The check is checked, so that another seccompiler layout
/// fails here rather than filtering the wrong ABI.
fn retarget(program: &mut BpfProgram, native: u32, audit_arch: u32) -> Result<(), SeccompError> {
    let check = [
        insn(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, SECCOMP_DATA_ARCH),
        insn(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, 1, 0, native),
        insn(libc::BPF_RET | libc::BPF_K, 0, 0, libc::SECCOMP_RET_KILL_PROCESS),
    ];
    if !program.starts_with(&check) {
        return Err(SeccompError::ArchCheck);
    }
    program[1].k = audit_arch;
    Ok(())
}

/// Joins one program per ABI (the native one first) into one that runs the program of the
/// syscall's ABI.
///
/// Layout: `LD [4]` (the arch), then for each other ABI `JEQ <its arch>, 0, 1` and `JA <its
/// program>` (a 32-bit offset: the 8-bit `jt`/`jf` could not reach past a long program); an
/// arch that matches none falls through [`X32_GUARD`] into the native program, whose own check
/// kills the process unless the arch is the native one. Every program ends in returns, so none
/// runs into the next.
fn link(programs: Vec<(u32, BpfProgram)>) -> Result<BpfProgram, SeccompError> {
    let mut programs = programs.into_iter();
    let Some((_, native)) = programs.next() else {
        return Err(SeccompError::Arch(std::env::consts::ARCH));
    };
    let others: Vec<_> = programs.collect();
    let mut linked = Vec::new();
    if !others.is_empty() {
        linked.push(insn(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, SECCOMP_DATA_ARCH));
        // Where the next ABI's program will start.
        let mut start = 1 + 2 * others.len() + X32_GUARD.len() + native.len();
        for (audit_arch, program) in &others {
            linked.push(insn(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, 0, 1, *audit_arch));
            // A jump goes to the instruction after it, plus k.
            let k = start - (linked.len() + 1);
            linked.push(insn(libc::BPF_JMP | libc::BPF_JA, 0, 0, k as u32));
            start += program.len();
        }
    }
    linked.extend_from_slice(X32_GUARD);
    linked.extend(native);
    for (_, program) in others {
        linked.extend(program);
    }
    if linked.len() > MAX_PROGRAM_LEN {
        return Err(SeccompError::TooLong { len: linked.len(), limit: MAX_PROGRAM_LEN, per_program: true });
    }
    Ok(linked)
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

/// The rules of one OCI syscall entry for an ABI whose syscalls read `arg_len` of an argument:
/// `None` if it has no argument condition.
fn rules(args: &[LinuxSeccompArg], arg_len: SeccompCmpArgLen) -> Result<Option<Vec<SeccompRule>>, RuleError> {
    if args.is_empty() {
        return Ok(None);
    }
    let conditions = args.iter().map(|arg| condition(arg, arg_len.clone())).collect::<Result<Vec<_>, _>>()?;
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

fn condition(arg: &LinuxSeccompArg, arg_len: SeccompCmpArgLen) -> Result<SeccompCondition, RuleError> {
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
    // A Dword condition compares the argument's low half with the value's (seccompiler drops
    // the value's upper half), as libseccomp does on a 32-bit ABI.
    SeccompCondition::new(index, arg_len, op, value).map_err(RuleError::Backend)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

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

    fn eval(filter: &Filter, name: &str, args: &[u64]) -> u32 {
        eval_arch(filter, ABIS[0].audit_arch, nr(name), args)
    }

    #[cfg(target_arch = "x86_64")]
    fn i386_nr(name: &str) -> u32 {
        syscalls::x86::Sysno::from_str(name).unwrap().id() as u32
    }

    #[cfg(target_arch = "x86_64")]
    fn eval_i386(filter: &Filter, name: &str, args: &[u64]) -> u32 {
        eval_arch(filter, AUDIT_ARCH_I386, i386_nr(name), args)
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
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn docker_default_applies_to_i386_syscalls_by_their_numbers() {
        // Two ABIs in one program take most of the kernel's 4096 instructions: every
        // capability allows the most syscalls, and the longest program.
        for caps in [CapSet::EMPTY, CapSet::DOCKER_DEFAULT, caps::parse(caps::ALL).unwrap()] {
            let filter = compile(&docker_profile(caps)).unwrap();
            let lens: Vec<usize> = filter.programs().iter().map(Vec::len).collect();
            eprintln!("docker_profile({:#x}): programs of {lens:?} BPF instructions", caps.bits());
            assert!(lens.iter().all(|&len| len <= MAX_PROGRAM_LEN));
        }
        let filter = compile(&docker_default()).unwrap();
        assert_eq!((i386_nr("getpid"), i386_nr("kexec_load")), (20, 283));

        // i386-only names (socketcall, _llseek...) included; arch_prctl is Docker's x86 addition.
        for name in [
            "read",
            "write",
            "execve",
            "exit_group",
            "getpid",
            "socketcall",
            "_llseek",
            "chown32",
            "mmap2",
            "waitpid",
            "set_thread_area",
            "arch_prctl",
            "ptrace",
            "chroot",
        ] {
            assert_eq!(eval_i386(&filter, name, &[]), RET_ALLOW, "{name}");
        }
        for name in
            ["mount", "umount", "umount2", "unshare", "setns", "keyctl", "add_key", "bpf", "kexec_load"]
        {
            assert_eq!(eval_i386(&filter, name, &[]), RET_EPERM, "{name}");
        }
        assert_eq!(eval_i386(&filter, "clone3", &[]), RET_ENOSYS);
        // The tables differ: 283 is timerfd_create on x86_64, 165 getresuid on i386.
        assert_eq!(eval_arch(&filter, AUDIT_ARCH_I386, 283, &[]), RET_EPERM);
        assert_eq!(eval_arch(&filter, AUDIT_ARCH_X86_64, 283, &[]), RET_ALLOW);
        assert_eq!(eval_arch(&filter, AUDIT_ARCH_I386, nr("mount"), &[]), RET_ALLOW);
        assert_eq!(eval_arch(&filter, AUDIT_ARCH_X86_64, nr("mount"), &[]), RET_EPERM);
        assert_eq!(eval_arch(&filter, AUDIT_ARCH_I386, 4000, &[]), RET_EPERM);

        let sigchld = libc::SIGCHLD as u64;
        assert_eq!(eval_i386(&filter, "clone", &[sigchld]), RET_ALLOW);
        assert_eq!(eval_i386(&filter, "clone", &[libc::CLONE_NEWUSER as u64 | sigchld]), RET_EPERM);
        // Only the low 32 bits count on i386: they are all the syscall reads.
        for (family, expected) in
            [(1, RET_ALLOW), (38, RET_EPERM), (39, RET_ALLOW), (40, RET_EPERM), (41, RET_ALLOW)]
        {
            assert_eq!(eval_i386(&filter, "socket", &[family, 1, 0]), expected, "family {family}");
            assert_eq!(eval_i386(&filter, "socket", &[1 << 32 | family, 1, 0]), expected, "family {family}");
        }
        assert_eq!(eval_i386(&filter, "personality", &[0xffffffff]), RET_ALLOW);
        assert_eq!(eval_i386(&filter, "personality", &[0x0040000]), RET_EPERM);
        assert_eq!(eval_i386(&filter, "personality", &[1 << 32]), RET_ALLOW);
    }

    #[test]
    fn other_abis_are_killed() {
        let filter = compile(&docker_default()).unwrap();
        let native = ABIS[0].audit_arch;
        let kill = libc::SECCOMP_RET_KILL_PROCESS;
        // A number no ABI has, and -1 (a syscall a tracer skips): the default action.
        assert_eq!(eval_arch(&filter, native, 4000, &[]), RET_EPERM);
        assert_eq!(eval_arch(&filter, native, u32::MAX, &[]), RET_EPERM);
        // AUDIT_ARCH_* of x86_64, aarch64, riscv64, arm and a made-up 64-bit i386.
        let arches = [0xc000_003e, 0xc000_00b7, 0xc000_00f3, 0x4000_0028, 0xc000_0003];
        for arch in arches.into_iter().filter(|&a| ABIS.iter().all(|abi| abi.audit_arch != a)) {
            assert_eq!(eval_arch(&filter, arch, nr("read"), &[]), kill, "arch {arch:#x}");
        }
        // x32: x86_64's arch, bit 30 set in the number.
        let x32 = if cfg!(target_arch = "x86_64") { kill } else { RET_EPERM };
        for nr in [0x4000_0000 | nr("read"), 0x4000_0000 | nr("getpid"), 0x8000_0000] {
            assert_eq!(eval_arch(&filter, native, nr, &[]), x32, "{nr:#x}");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn link_dispatches_on_the_arch_with_a_long_jump() {
        let ret = |k| vec![insn(libc::BPF_RET | libc::BPF_K, 0, 0, k); 300];
        let linked = link(vec![(AUDIT_ARCH_X86_64, ret(1)), (AUDIT_ARCH_I386, ret(2))]).unwrap();
        assert_eq!(linked.len(), 3 + X32_GUARD.len() + 600);
        assert_eq!(linked[0], insn(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, 4));
        assert_eq!(linked[1], insn(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, 0, 1, AUDIT_ARCH_I386));
        assert_eq!(linked[2], insn(libc::BPF_JMP | libc::BPF_JA, 0, 0, (X32_GUARD.len() + 300) as u32));
        assert_eq!(&linked[3..][..X32_GUARD.len()], X32_GUARD);
        let filter = Filter { programs: vec![linked] };
        assert_eq!(eval_arch(&filter, AUDIT_ARCH_X86_64, 0, &[]), 1);
        assert_eq!(eval_arch(&filter, AUDIT_ARCH_I386, 0, &[]), 2);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn filter_over_the_kernel_limit_is_an_error() {
        // One rule per value of read's first argument, about 7 instructions each on x86_64 and 5
        // on i386: with 500, each ABI's program fits (seccompiler refuses one that does not), the
        // two together do not.
        let filter = |values: u64| {
            let args: Vec<String> = (0..values)
                .map(|v| format!(r#"{{"index": 0, "value": {v}, "op": "SCMP_CMP_EQ"}}"#))
                .collect();
            compile(&profile(&format!(
                r#"{{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
                    {{"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{}]}}]}}"#,
                args.join(", ")
            )))
        };
        let fits = filter(300).unwrap();
        assert!(fits.programs()[0].len() <= MAX_PROGRAM_LEN);
        let err = hostutil::errors::one_line(&filter(500).unwrap_err());
        assert!(err.contains("over the kernel's limit of 4096 per program"), "{err}");
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
        // Docker's own multi-arch list is accepted (see the module doc for the ABIs filtered).
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

    /// An i386 syscall from this 64-bit process: `int $0x80` runs the i386 ABI (seccomp sees
    /// AUDIT_ARCH_I386) with the registers as they are, upper halves included. Returns eax: the
    /// result or -errno.
    #[cfg(target_arch = "x86_64")]
    fn int80(nr: u32, args: [u64; 3]) -> i32 {
        let ret: u64;
        // SAFETY: `int $0x80` reads eax, ebx, ecx, edx and writes eax (kernels before 4.17 also
        // cleared r8-r11); rbx, which LLVM reserves, is swapped with a scratch register and back.
        unsafe {
            std::arch::asm!(
                "xchg {arg0}, rbx",
                "int 0x80",
                "xchg {arg0}, rbx",
                arg0 = inout(reg) args[0] => _,
                inlateout("rax") u64::from(nr) => ret,
                in("rcx") args[1],
                in("rdx") args[2],
                out("r8") _,
                out("r9") _,
                out("r10") _,
                out("r11") _,
                options(nostack),
            );
        }
        ret as i32
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn installed_filter_applies_to_i386_syscalls() {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root");
            return;
        }
        let filter = compile(&docker_default()).unwrap();
        let [getpid, unshare, socket, clone3, personality] =
            ["getpid", "unshare", "socket", "clone3", "personality"].map(i386_nr);
        let (high, vsock, unix) = (1u64 << 32, libc::AF_VSOCK as u64, libc::AF_UNIX as u64);
        let stream = libc::SOCK_STREAM as u64;
        // SAFETY: as in child_checks: the child makes raw syscalls only and leaves through _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", Errno::last());
        if pid == 0 {
            // SAFETY: as above.
            unsafe {
                let check = |ok: bool, code: i32| {
                    if !ok {
                        libc::_exit(code)
                    }
                };
                let eperm = -libc::EPERM;
                // The kernel runs i386 syscalls (IA32 emulation), and they read the low halves.
                check(int80(getpid, [0; 3]) == libc::getpid(), 2);
                check(int80(socket, [high | vsock, stream, 0]) != eperm, 3);
                check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) == 0, 4);
                check(filter.install().is_ok(), 5);
                // Before i386 was filtered, the first one was killed (SIGSYS).
                check(int80(getpid, [0; 3]) == libc::getpid(), 6);
                check(int80(unshare, [libc::CLONE_NEWUSER as u64, 0, 0]) == eperm, 7);
                check(int80(clone3, [0; 3]) == -libc::ENOSYS, 8);
                check(int80(socket, [high | vsock, stream, 0]) == eperm, 9);
                check(int80(socket, [high | unix, stream, 0]) >= 0, 10);
                check(int80(personality, [high | 0xffff_ffff, 0, 0]) >= 0, 11);
                check(libc::getpid() > 0, 12);
                libc::_exit(0)
            }
        }
        let mut status = 0;
        // SAFETY: waits for our own child; `status` outlives the call.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status), "child status {status:#x}");
        assert_eq!(libc::WEXITSTATUS(status), 0, "check failed in the filtered child");
    }
}
