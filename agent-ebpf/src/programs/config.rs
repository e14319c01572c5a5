//! The run's settings and kernel offsets, set by the agent before load.
use agent_ebpf::Config;

/// Written by the loader (`EbpfLoader::override_global`); read-only here.
#[unsafe(no_mangle)]
static SPANLET_CONFIG: Config = Config {
    min_wait_ns: 0,
    task_pid_off: 0,
    task_tgid_off: 0,
    task_flags_off: 0,
    task_pending_off: 0,
    task_blocked_off: 0,
    task_signal_off: 0,
    signal_shared_pending_off: 0,
    signal_live_off: 0,
    regs_orig_ax_off: 0,
    regs_cs_off: 0,
    regs_arg_off: [0; 6],
    trace_all: 0,
    follow_forks: 0,
    ringbuf_wakeup_bytes: 0,
    task_comm_off: 0,
    task_fsbase_off: 0,
    binprm_file_off: 0,
    file_inode_off: 0,
    inode_ino_off: 0,
    inode_sb_off: 0,
    sb_dev_off: 0,
    obi_ctx: 0,
    mutex_owner_off: 0,
    rwsem_owner_off: 0,
    task_files_off: 0,
    files_fdt_off: 0,
    fdtable_max_fds_off: 0,
    fdtable_fd_off: 0,
    file_private_data_off: 0,
    inode_mode_off: 0,
    socket_sk_off: 0,
    sk_family_off: 0,
    sk_num_off: 0,
    sk_dport_off: 0,
    sk_rcv_saddr_off: 0,
    sk_daddr_off: 0,
    sk_v6_rcv_saddr_off: 0,
    sk_v6_daddr_off: 0,
    sk_type_off: 0,
    sk_protocol_off: 0,
    eventpoll_rdllist_off: 0,
    epitem_rdllink_off: 0,
    epitem_file_off: 0,
    epitem_fd_off: 0,
    report_all_execs: 0,
    task_start_boottime_off: 0,
    _pad: 0,
};

/// Volatile reads keep the compiler from folding the zero defaults in.
#[inline(always)]
pub fn get() -> &'static Config {
    // SAFETY: a static's address is always valid; the read is volatile so
    // the values set at load time are the ones seen.
    unsafe { &*core::ptr::read_volatile(&&raw const SPANLET_CONFIG) }
}
