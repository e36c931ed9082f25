//! The operating-system helpers npk's servers, benchmarks and commands share: thread pinning,
//! scheduling priorities, CPU time and the stop flag that Ctrl-C sets. Each wraps one libc call
//! with its safety argument.

use std::{
    io,
    sync::{
        Once,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

/// When process `pid` started (clock ticks after boot, /proc/PID/stat's field 22), or `None`
/// when there is no such process or it is a zombie: a zombie has exited and only waits for
/// its parent to read its status, so nothing it owned is in use any more.
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name may hold spaces and parentheses: the fields start after the last ')'.
    let (_, after_name) = stat.rsplit_once(')')?;
    let mut fields = after_name.split_whitespace();
    if fields.next()? == "Z" {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// Pins thread `tid` (0: the calling one) to `cpu`.
pub fn pin_thread(tid: i32, cpu: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is a plain bit set; CPU_SET checks nothing but we bound cpu first.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if cpu >= 8 * size_of::<libc::cpu_set_t>() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("CPU {cpu} is beyond the CPU set"),
            ));
        }
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(tid, size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Pins the calling thread (and the threads it starts later) to `cpu`.
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    pin_thread(0, cpu)
}

/// Gives thread `tid` a real-time priority (SCHED_FIFO, `priority` 1..=99): it runs as soon as
/// it wakes, ahead of every ordinary thread on its CPU, as softirq work would.
pub fn make_realtime(tid: i32, priority: i32) -> io::Result<()> {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: sched_setscheduler with a valid sched_param.
    if unsafe { libc::sched_setscheduler(tid, libc::SCHED_FIFO, &param) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets the calling thread's nice value (-20..=19; lower runs first): Linux keeps it per
/// thread. Threads and children started later inherit it.
pub fn set_nice(nice: i32) -> io::Result<()> {
    // SAFETY: setpriority on this process, no pointers.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// User + system CPU time this process has used.
pub fn process_cpu_time() -> Duration {
    // SAFETY: getrusage fills the struct we pass.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Time CPU `cpu` has spent busy since boot (everything but idle and I/O wait), from
/// /proc/stat (clock-tick resolution: 10 ms at USER_HZ 100).
pub fn cpu_busy_time(cpu: usize) -> io::Result<Duration> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let name = format!("cpu{cpu}");
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name.as_str()))
        .ok_or_else(|| io::Error::other(format!("/proc/stat has no {name} line")))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|t| {
            t.parse()
                .map_err(|_| io::Error::other(format!("/proc/stat: bad {name} line")))
        })
        .collect::<io::Result<_>>()?;
    if ticks.len() < 5 {
        return Err(io::Error::other(format!("/proc/stat: short {name} line")));
    }
    // user nice system idle iowait irq softirq steal ...: all but idle and iowait (steal
    // too: time the hypervisor took is not the server's).
    let busy: u64 = ticks
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| !matches!(i, 3 | 4 | 7))
        .map(|(_, t)| t)
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(Duration::from_nanos(busy * 1_000_000_000 / hz))
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Set once SIGINT, SIGTERM or SIGHUP (a closed terminal) arrives; the first call installs the handlers, which only set
/// the flag, so loops that check it end and everything is cleaned up on the way out.
pub fn stop_flag() -> &'static AtomicBool {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // SAFETY: the handler only stores to an atomic (async-signal-safe).
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_stop_signal as *const () as usize;
            libc::sigemptyset(&mut action.sa_mask);
            for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                libc::sigaction(signal, &action, std::ptr::null_mut());
            }
        }
    });
    &STOP
}

/// CLOCK_MONOTONIC in ns: what `bpf_ktime_get_ns()` returns in the kernel.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
