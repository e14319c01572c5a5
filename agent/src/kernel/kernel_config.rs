//! The [`Config`] global: kernel struct offsets from the running kernel's
//! BTF plus this run's settings.
use agent_ebpf::Config;

use crate::{
    kernel::btf::{BtfError, KernelBtf},
    kernel::features::Features,
};

/// Builds the programs' configuration for this kernel.
pub fn build(btf: &KernelBtf, features: &Features) -> Result<Config, BtfError> {
    let Features {
        trace_all,
        follow_forks,
        report_all_execs,
        ringbuf_bytes,
        ..
    } = *features;
    let regs = |name: &str| btf.member_offset("pt_regs", name);
    let sock = |name: &str| btf.member_offset("sock", &format!("__sk_common.{name}"));
    Ok(Config {
        min_wait_ns: features.min_wait_ns(),
        task_pid_off: btf.member_offset("task_struct", "pid")?,
        task_tgid_off: btf.member_offset("task_struct", "tgid")?,
        task_flags_off: btf.member_offset("task_struct", "flags")?,
        task_pending_off: btf.member_offset("task_struct", "pending.signal")?,
        task_blocked_off: btf.member_offset("task_struct", "blocked")?,
        task_signal_off: btf.member_offset("task_struct", "signal")?,
        signal_shared_pending_off: btf.member_offset("signal_struct", "shared_pending.signal")?,
        signal_live_off: btf.member_offset("signal_struct", "live")?,
        regs_orig_ax_off: regs("orig_ax")?,
        regs_cs_off: regs("cs")?,
        regs_arg_off: [
            regs("di")?,
            regs("si")?,
            regs("dx")?,
            regs("r10")?,
            regs("r8")?,
            regs("r9")?,
        ],
        trace_all: u32::from(trace_all),
        follow_forks: u32::from(follow_forks),
        ringbuf_wakeup_bytes: agent_ebpf::RINGBUF_WAKEUP_BYTES.min(ringbuf_bytes / 4),
        task_comm_off: btf.member_offset("task_struct", "comm")?,
        task_fsbase_off: btf.member_offset("task_struct", "thread.fsbase")?,
        binprm_file_off: btf.member_offset("linux_binprm", "file")?,
        file_inode_off: btf.member_offset("file", "f_inode")?,
        inode_ino_off: btf.member_offset("inode", "i_ino")?,
        inode_sb_off: btf.member_offset("inode", "i_sb")?,
        sb_dev_off: btf.member_offset("super_block", "s_dev")?,
        obi_ctx: 0,
        mutex_owner_off: btf.member_offset("mutex", "owner")?,
        rwsem_owner_off: btf.member_offset("rw_semaphore", "owner")?,
        task_files_off: btf.member_offset("task_struct", "files")?,
        files_fdt_off: btf.member_offset("files_struct", "fdt")?,
        fdtable_max_fds_off: btf.member_offset("fdtable", "max_fds")?,
        fdtable_fd_off: btf.member_offset("fdtable", "fd")?,
        file_private_data_off: btf.member_offset("file", "private_data")?,
        inode_mode_off: btf.member_offset("inode", "i_mode")?,
        socket_sk_off: btf.member_offset("socket", "sk")?,
        sk_family_off: sock("skc_family")?,
        sk_num_off: sock("skc_num")?,
        sk_dport_off: sock("skc_dport")?,
        sk_rcv_saddr_off: sock("skc_rcv_saddr")?,
        sk_daddr_off: sock("skc_daddr")?,
        sk_v6_rcv_saddr_off: sock("skc_v6_rcv_saddr")?,
        sk_v6_daddr_off: sock("skc_v6_daddr")?,
        sk_type_off: btf.member_offset("sock", "sk_type")?,
        sk_protocol_off: btf.member_offset("sock", "sk_protocol")?,
        eventpoll_rdllist_off: btf.member_offset("eventpoll", "rdllist")?,
        epitem_rdllink_off: btf.member_offset("epitem", "rdllink")?,
        epitem_file_off: btf.member_offset("epitem", "ffd.file")?,
        epitem_fd_off: btf.member_offset("epitem", "ffd.fd")?,
        report_all_execs: u32::from(report_all_execs),
        task_start_boottime_off: btf.member_offset("task_struct", "start_boottime")?,
        _pad: 0,
    })
}
