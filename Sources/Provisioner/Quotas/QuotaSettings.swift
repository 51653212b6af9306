/// `[quota]`: each tenant's share of the server. One number per village, its quota,
/// holds its files and its database together; its processes are limited too.
public struct QuotaSettings: ConfigSection {
    public static let name = "quota"

    /// How files are limited: not at all, a filesystem image per tenant (loop-mounted at
    /// its home: works on any server, the sandbox's included), or the kernel's user quotas
    /// on the filesystem of the web root (ext4 or XFS mounted with usrquota).
    public enum Backend: String, ConfigEnum { case none, image, kernel }

    @Setting("backend", "\"none\"; \"image\": a filesystem image per tenant, loop-mounted at its home; \"kernel\": user quotas on the web root's filesystem (mounted with usrquota)")
    public var backend = Backend.none
    @Setting("default", "each tenant's one quota, its files and its database together (IEC: 512MiB, 2GiB), unless set per tenant")
    public var `default` = ByteSize(bytes: 2 << 30)
    @Setting("inodes_per_gib", "files and directories a tenant may have, per GiB of its quota")
    public var inodesPerGiB = 65_536
    @Setting("processes", "processes a tenant may run at once, enforced by the kernel at fork: with a master per tenant, TasksMax= of its unit (its master, workers and their programs); otherwise RLIMIT_NPROC of its PHP's user")
    public var processes = 100
    @Setting("memory", "memory a tenant's PHP may use at once, all its processes together (production with php.masters = \"tenant\": MemoryMax= of its master's unit, swap included)")
    public var memory = ByteSize(bytes: 1 << 30)
    @Setting("cpu", "CPU a tenant's PHP may use, in percent of one core (production with php.masters = \"tenant\": CPUQuota= of its master's unit)")
    public var cpu = 100
    @Setting("image_dir", "where the image backend keeps the images, one per tenant; \"\": state_dir/images", .path)
    public var imageDir: String? = nil
    @Setting("unit_dir", "where production writes the image backend's mount units, which mount every image at boot (a sandbox has none: apply mounts them)", .path)
    public var unitDir = "/etc/systemd/system"
    @Setting("check_interval", "seconds between the agent's quota checks (usage measured; a database over its quota closed to writes)")
    public var checkInterval = 300
    @Setting("warning_percent", "a tenant using more of its quota than this is degraded (down at 100)")
    public var warningPercent = 90.0
    @Setting("closed_dirs", "world-writable places no tenant may write in (its programs get TMPDIR in its home)", .path)
    public var closedDirs = ["/tmp", "/var/tmp", "/dev/shm", "/run/lock"]

    public init() {}
    public init(from decoder: Decoder) throws { try self.init(settingsFrom: decoder) }
    public func encode(to encoder: Encoder) throws { try encodeSettings(to: encoder) }

    /// The smallest quota: an ext4 image needs room for its journal and inode tables.
    public static let minimum = ByteSize(bytes: 16 << 20)
    /// The least memory a tenant's PHP may have: its master and one worker running OpenSID.
    public static let minimumMemory = ByteSize(bytes: 64 << 20)
    /// CPU in percent of one core: a twentieth of one to 64 cores.
    public static let cpuRange = 5...6400
    public static let processRange = 10...100_000

    public func validate(in config: Config) throws {
        func fail(_ m: String) -> DesaError { DesaError(.config, m) }
        guard `default` >= Self.minimum else { throw fail("quota.default must be at least \(Self.minimum) (got \(`default`))") }
        guard (1024...10_000_000).contains(inodesPerGiB) else { throw fail("quota.inodes_per_gib must be 1024 to 10000000 (got \(inodesPerGiB))") }
        guard Self.processRange.contains(processes) else { throw fail("quota.processes must be \(Self.processRange.lowerBound) to \(Self.processRange.upperBound) (got \(processes))") }
        guard memory >= Self.minimumMemory else { throw fail("quota.memory must be at least \(Self.minimumMemory) (got \(memory))") }
        guard Self.cpuRange.contains(cpu) else { throw fail("quota.cpu must be \(Self.cpuRange.lowerBound) to \(Self.cpuRange.upperBound) percent of one core (got \(cpu))") }
        guard checkInterval >= 30 else { throw fail("quota.check_interval must be at least 30 seconds (got \(checkInterval))") }
        guard warningPercent > 0, warningPercent < 100 else { throw fail("quota.warning_percent must be between 0 and 100 (got \(warningPercent))") }
    }
}

extension Config {
    /// `[quota]`, the quotas capability's section.
    public var quota: QuotaSettings {
        get { section(QuotaSettings.self) }
        set { set(newValue) }
    }

    /// Where the image backend keeps its images.
    public var quotaImageDir: String { quota.imageDir ?? stateDir + "/images" }
}

extension QuotaSettings {
    /// What this server enforces of a tenant's share, for `desactl config check`: each line
    /// one limit and how it is held (or that it is not), looked up on this machine.
    public static func enforcement(_ c: Config) -> [String] {
        let q = c.quota
        var out: [String] = []
        switch q.backend {
        case .none:
            out.append("files: not limited (quota.backend = \"none\"); databases: measured by desactl quota report only once a backend is chosen")
        case .image:
            let mount = KernelBackend.mountPoint(of: c.quotaImageDir, Mounts.table()) ?? "?"
            out.append("files: an ext4 image per tenant in \(c.quotaImageDir) (on \(mount)), loop-mounted at its home; default \(q.default), \(q.inodesPerGiB) inodes per GiB")
        case .kernel:
            let table = Mounts.table()
            if let mount = KernelBackend.mountPoint(of: c.webRoot, table) {
                out.append(KernelBackend.quotasOn(mount)
                    ? "files: user quotas on \(mount) (where \(c.webRoot) lies), usrquota on; default \(q.default), \(q.inodesPerGiB) inodes per GiB"
                    : "files: NOT ENFORCED: \(mount) (where \(c.webRoot) lies) is not mounted with usrquota; every apply fails its tenants until it is (or use \"image\")")
            } else {
                out.append("files: NOT ENFORCED: no mount holds \(c.webRoot)")
            }
        }
        if q.backend != .none {
            out.append(c.mariadb.enabled
                ? "databases: counted in the same quota from MariaDB's own figures; over it, writes revoked (the agent checks every \(q.checkInterval) s)"
                : "databases: none (mariadb.enabled = false)")
            out.append("shared writable places closed to tenants: \(q.closedDirs.isEmpty ? "none" : q.closedDirs.joined(separator: ", "))")
        }
        if TenantMasters.on(c) {
            let units = c.php.versions.keys.sorted().map(TenantMasters.template).joined(separator: ", ")
            out.append("processes, memory and CPU: each tenant's PHP in a php-fpm master of its own (\(units)), whose cgroup the kernel holds to its limits: default \(q.processes) processes (TasksMax=), \(q.memory) (MemoryMax=, no swap beyond it), \(q.cpu)% of one core (CPUQuota=); desactl quota set SLUG --memory/--cpu/--processes for one tenant")
            return out
        }
        if q.backend == .none {
            out.append("processes: not limited (quota.backend = \"none\")")
        } else if c.mode == .sandbox {
            out.append("processes: at most \(q.processes) per tenant (RLIMIT_NPROC of its PHP: the sandbox's php-fpm starts under prlimit)")
        } else {
            let services = ProcessLimit.services(c).map(ProcessLimit.unitName)
            out.append("processes: at most \(q.processes) per tenant (LimitNPROC= of \(services.joined(separator: ", ")), in desa's drop-in desa-processes.conf beside each; its workers inherit it)")
        }
        out.append("memory and CPU: NOT LIMITED per tenant (each pool's memory_limit bounds one PHP request only): \(c.mode == .sandbox ? "a sandbox runs one php-fpm master for all tenants, without systemd" : "php.masters = \"shared\"; set it to \"tenant\" for a master per tenant in a unit the kernel holds to quota.memory and quota.cpu")")
        return out
    }
}
