import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The image backend: each tenant's home is the root of an ext4 filesystem of its own, a
/// sparse file `<image_dir>/<code digits>.img` loop-mounted at the home (`nodev,nosuid`).
/// Whatever its UID writes in its home, by PHP or any program PHP starts, lands in that
/// filesystem, and the filesystem is full at the quota: ENOSPC, enforced by the kernel,
/// with no ID a file's owner could change to escape it.
///
/// The image is made twice the quota (sparse: the unused half costs nothing) and the half
/// the tenant may not use is ext4's reserved blocks, which only root may fill. Raising the
/// quota within that headroom lowers the reserve on the mounted filesystem (`tune2fs -r`),
/// at once, while the site serves; beyond it the image is regrown offline (unmounted for
/// the moment `resize2fs` takes). Usage is the filesystem's own counters (`statvfs`).
enum ImageBackend {
    struct Seen: Sendable {
        /// The image's size in bytes, when it exists.
        var imageBytes: Int64?
        /// The home is the mount of this image.
        var mounted: Bool
        /// Something else is mounted at the home.
        var foreign: String?
        /// The home exists (as a directory, not mounted) and holds entries: a home made
        /// before quotas, whose files go into the image first.
        var homeHasFiles: Bool
        var usage: Mounts.Usage?
    }

    /// How an image is mounted: by its unit at boot (mount(8)'s options), and by apply
    /// (mount(2)'s flags and data), the same either way.
    static let mountOptions = "loop,nodev,nosuid,noatime,noinit_itable"
    static let mountFlags = UInt(MS_NODEV) | UInt(MS_NOSUID) | UInt(MS_NOATIME)
    static let mountData = "noinit_itable"

    static func imagePath(_ t: Tenant, _ c: Config) -> String { c.quotaImageDir + "/" + t.code.filter(\.isNumber) + ".img" }

    /// Twice the quota, rounded up to whole 4 KiB blocks.
    static func imageBytes(for quota: Int64) -> Int64 { ((2 * quota + 4095) / 4096) * 4096 }

    static func observe(_ d: DesiredState, _ host: Observing) -> (dir: [String: FileStat], tenants: [String: Seen]) {
        let mounts = Mounts.table()
        var out: [String: Seen] = [:]
        for t in d.tenants {
            let image = imagePath(t, d.config), home = t.home(d.config)
            var s = Seen(imageBytes: fileSize(image), mounted: false, foreign: nil, homeHasFiles: false)
            if let m = mounts[home] {
                if Mounts.loopBackingFile(m.source) == image { s.mounted = true } else { s.foreign = "\(m.source) (\(m.fsType))" }
            } else if let dir = try? DirHandle.openHome(home), let names = try? dir.entries() {
                s.homeHasFiles = !names.isEmpty
            }
            if s.mounted { s.usage = Mounts.usage(home) }
            out[t.code] = s
        }
        return (host.stats([d.config.quotaImageDir]), out)
    }

    static func fileSize(_ path: String) -> Int64? {
        var st = stat()
        guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        return Int64(st.st_size)
    }

    static func plan(_ d: DesiredState, _ seen: (dir: [String: FileStat], tenants: [String: Seen]), quotas: (Tenant) -> TenantQuota,
                     into out: inout CapabilityPlan) {
        let dir = d.config.quotaImageDir
        out.steps += Step.ensure([DirSpec(path: dir, uid: 0, gid: 0, mode: 0o700)], nil, seen.dir)
        for t in d.tenants {
            let s = seen.tenants[t.code] ?? Seen(mounted: false, homeHasFiles: false)
            let image = imagePath(t, d.config), home = t.home(d.config)
            if t.desired == .deleted {
                if s.mounted { out.steps.append(Step(t.code, "unmount-image", .unmount, .custom(UnmountImage(home: home)))) }
                if s.imageBytes != nil {
                    out.steps.append(t.purge
                        ? Step(t.code, "purge-image", .archive, .custom(PurgeImage(image: image)))
                        : Step(t.code, "archive-image", .archive, .custom(ArchiveImage(image: image, to: t.archivePath(d.config, at: d.now) + "-files.img"))))
                }
                continue
            }
            let q = quotas(t)
            if let foreign = s.foreign {
                out.steps.append(.fail(t.code, "\(home) is a mount of \(foreign), not of its quota image \(image); unmount it, then desactl apply"))
                continue
            }
            let make = MakeImage(image: image, imageDir: dir, bytes: imageBytes(for: q.bytes), inodes: q.inodes, quota: q.bytes)
            let mount = MountImage(image: image, home: home, uid: t.uid, gid: d.webGID, limit: q.bytes)
            guard let size = s.imageBytes else {
                if s.homeHasFiles {
                    out.steps.append(Step(t.code, "move-into-image", .mounts, .custom(MoveIntoImage(make: make, mount: mount, gid: t.uid))))
                } else {
                    out.steps.append(Step(t.code, "create-image", .mounts, .custom(make)))
                    out.steps.append(Step(t.code, "mount-image", .mounts, .custom(mount)))
                }
                continue
            }
            guard s.mounted, let u = s.usage else {
                // A home with files of its own under the mount point would be hidden by it.
                if s.homeHasFiles {
                    out.steps.append(.fail(t.code, "\(home) holds files, and is not the mount of its image \(image) (\(size) bytes); move them away or into the image, then desactl apply"))
                } else {
                    out.steps.append(Step(t.code, "mount-image", .mounts, .custom(mount)))
                }
                continue
            }
            if fits(q.bytes, image: size) {
                // The limit in whole blocks, as the reserve makes it.
                if u.limitBytes != q.bytes / u.blockSize * u.blockSize {
                    out.steps.append(Step(t.code, "set-quota", .mounts, .custom(SetImageLimit(home: home, bytes: q.bytes))))
                }
            } else {
                out.steps.append(Step(t.code, "regrow-image", .mounts, .custom(RegrowImage(
                    image: image, home: home, bytes: imageBytes(for: q.bytes), mount: mount, uid: t.uid, gid: t.uid))))
            }
        }
    }

    /// Whether an image of `image` bytes can hold a quota of `bytes` by its reserve alone:
    /// ext4 reserves at most half its blocks, so the quota must be at least half the image.
    static func fits(_ bytes: Int64, image: Int64) -> Bool { bytes <= image && 2 * bytes >= image }
}

/// The image of a tenant made: a sparse file, an ext4 filesystem in it (4 KiB blocks, no
/// reserve for anyone but root beyond half of it), its root owned by the tenant.
struct MakeImage: CustomEffect {
    var image: String
    var imageDir: String
    var bytes: Int64
    var inodes: Int
    var quota: Int64
    var subject: String { "\(image) (\(ByteSize.readable(bytes / 2)) of \(ByteSize.readable(bytes)), \(inodes) inodes)" }

    /// The blocks mke2fs's layout takes for itself (its superblock's `s_overhead_clusters`),
    /// by image size and inodes: the same for every image of one geometry, so once one is
    /// made, the next is made with its tenant's exact reserve and needs no tune2fs after
    /// the mount (`SetImageLimit` still checks, and sets it when the guess was wrong).
    static let overheads = Mutex<[String: Int64]>([:])
    var geometry: String { "\(bytes)/\(inodes)" }

    /// mke2fs's `-m`: half, or the percentage that makes exactly the reserve that leaves
    /// the tenant its quota, as the kernel counts (what `SetImageLimit` sets).
    func reservedPercent() -> String {
        let blocks = bytes / 4096
        guard let overhead = Self.overheads.withLock({ $0[geometry] }) else { return "50" }
        let reserve = blocks - overhead - quota / 4096 - SetImageLimit.kernelReserve(blocks: blocks)
        guard reserve >= 0, 2 * reserve < blocks else { return "50" }
        // mke2fs truncates percent × blocks / 100: half a block over lands on `reserve`.
        return String(format: "%.9f", (Double(reserve) + 0.5) * 100 / Double(blocks))
    }

    /// `s_overhead_clusters` of the filesystem in an image (4 KiB blocks), nil when unset.
    static func overhead(of image: String) -> Int64? {
        let fd = open(image, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var sb = [UInt8](repeating: 0, count: 1024)
        guard pread(fd, &sb, 1024, 1024) == 1024, sb[0x38] == 0x53, sb[0x39] == 0xEF else { return nil }  // s_magic
        let v = Int64(sb[0x248]) | Int64(sb[0x249]) << 8 | Int64(sb[0x24A]) << 16 | Int64(sb[0x24B]) << 24
        return v > 0 ? v : nil
    }

    func run(_ context: ApplyContext) throws {
        let parent = (imageDir as NSString).deletingLastPathComponent, name = (imageDir as NSString).lastPathComponent
        try DirHandle.open(parent).ensureDir(name, uid: 0, gid: 0, mode: 0o700)
        let fd = open(image, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw DesaError.system("cannot create \(image): \(errnoText())") }
        let sized = ftruncate(fd, off_t(bytes)) == 0
        let why = errnoText()
        close(fd)
        do {
            guard sized else { throw DesaError.system("cannot size \(image) to \(bytes) bytes: \(why)") }
            // The blocks only root may use: at most half (the most mke2fs allows), so the
            // tenant never has more than its quota, even before the mount checks it.
            // The journal is not zeroed (`lazy_journal_init`): the new file is a hole, which
            // reads as zeros already (4 MiB less written per tenant).
            try Quota.run(context, ["/sbin/mkfs.ext4", "-q", "-F", "-b", "4096", "-m", reservedPercent(), "-N", "\(inodes)", "-J", "size=4",
                                    "-E", "nodiscard,lazy_journal_init=1", "-L", "desa-quota", image], "making the filesystem of \(image)")
            if let o = Self.overhead(of: image) { Self.overheads.withLock { $0[geometry] = o } }
        } catch {
            unlink(image)
            throw error
        }
    }
}

/// The image mounted at the home (`loop,nodev,nosuid,noatime`; `noinit_itable`: the
/// image is sparse, its inode tables read as zeros already, and zeroing them again would
/// write tens of MB per tenant), the mount's root given
/// to the tenant (its group the web server's, 0750, as a home), its limit set.
struct MountImage: CustomEffect {
    var image: String
    var home: String
    var uid: Int
    var gid: Int
    var limit: Int64
    var subject: String { "\(image) at \(home)" }

    func run(_ context: ApplyContext) throws {
        // A new server's first tenant: the web root (root's) comes before its directories
        // phase would make it; that phase then gives it its mode.
        let root = (home as NSString).deletingLastPathComponent
        if access(root, F_OK) != 0 {
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o711])
        }
        let web = try DirHandle.open(root)
        let slug = (home as NSString).lastPathComponent
        if web.stat(slug) == nil { try web.ensureDir(slug, uid: 0, gid: 0, mode: 0o700) }
        guard web.stat(slug)?.isDirectory == true else { throw DesaError.system("\(home) is not a directory to mount the image at") }
        _ = try Mounts.mountLoop(image, at: home, fsType: "ext4", flags: ImageBackend.mountFlags, data: ImageBackend.mountData)
        try DirHandle.openHome(home).ensureOwnership(uid: uid, gid: gid, mode: 0o750)
        try SetImageLimit(home: home, bytes: limit).run(context)
    }
}

/// The tenant's limit on its mounted image: the reserve only root may use is whatever
/// the quota leaves of the filesystem. At once, while it serves.
struct SetImageLimit: CustomEffect {
    var home: String
    var bytes: Int64
    var subject: String { "\(home): \(ByteSize.readable(bytes))" }

    /// The clusters ext4 keeps back from everyone for itself (Linux's
    /// `ext4_calculate_resv_clusters`: 2% of the blocks, at most 4096); read from sysfs
    /// once mounted, this is the guess before.
    static func kernelReserve(blocks: Int64) -> Int64 { min(blocks / 50, 4096) }

    func run(_ context: ApplyContext) throws {
        // The loop device the home's filesystem lives on, from the home's own device
        // number (the mount table would be read whole for each tenant: O(n²) in an import).
        guard let device = Mounts.loopDevice(mountedAt: home) else {
            throw DesaError.system("\(home) is not mounted from its image")
        }
        guard let u = Mounts.usage(home) else { throw DesaError.system("cannot read the usage of \(home): \(errnoText())") }
        // ext4 keeps a few clusters of its own back from every user (for delayed
        // allocation); the reserve is what is left above the quota after them.
        let own = Int64(AtomicFiles.read("/sys/fs/ext4/\(device)/reserved_clusters")?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 0
        let reserve = u.totalBlocks - bytes / u.blockSize - own
        guard reserve >= 0 else { throw DesaError.system("the image at \(home) holds \(ByteSize.readable(u.totalBlocks * u.blockSize)), less than \(ByteSize.readable(bytes))") }
        // Made with this reserve already (`MakeImage`), or set before.
        if u.reservedBlocks - own == reserve { return }
        // The mounted device, not the image file: the kernel reads its superblock from there.
        try Quota.run(context, ["/sbin/tune2fs", "-r", "\(reserve)", "/dev/" + device], "setting the quota of \(home)")
    }
}

/// An image too small or too large for a new quota, made again at twice it: offline for
/// the moment it takes (its processes ended, unmounted, checked, resized, mounted again).
struct RegrowImage: CustomEffect {
    var image: String
    var home: String
    var bytes: Int64
    var mount: MountImage
    var uid: Int
    var gid: Int
    var subject: String { "\(image) to \(ByteSize.readable(bytes)) (offline for a moment)" }

    func run(_ context: ApplyContext) throws {
        if let u = Mounts.usage(home), u.usedBytes > mount.limit {
            throw DesaError.invalid("\(home) uses \(ByteSize.readable(u.usedBytes)), more than \(ByteSize.readable(mount.limit))")
        }
        _ = try Processes.killAll(uid: uid, gid: gid, timeout: 5, time: context.time)
        try UnmountImage(home: home).run(context)
        try Quota.run(context, ["/sbin/e2fsck", "-f", "-p", image], "checking \(image)")
        guard let size = ImageBackend.fileSize(image) else { throw DesaError.system("\(image) is gone") }
        if bytes > size { guard truncate(image, off_t(bytes)) == 0 else { throw DesaError.system("cannot grow \(image): \(errnoText())") } }
        try Quota.run(context, ["/sbin/resize2fs", image, "\(bytes / 4096)"], "resizing \(image)")
        if bytes < size { guard truncate(image, off_t(bytes)) == 0 else { throw DesaError.system("cannot shrink \(image): \(errnoText())") } }
        try Quota.run(context, ["/sbin/tune2fs", "-r", "\(bytes / 4096 / 2)", image], "reserving half of \(image)")
        try mount.run(context)
    }
}

/// A home made before quotas, with its files, moved into its new image: the image is
/// mounted beside the home, the files copied into it by the tenant's own user (who can
/// read nothing of anyone else's, whatever links it placed), then the image takes the
/// home's place and the old tree is removed by descriptor.
struct MoveIntoImage: CustomEffect {
    var make: MakeImage
    var mount: MountImage
    var gid: Int
    var subject: String { "\(mount.home) into \(make.image)" }

    func run(_ context: ApplyContext) throws {
        try make.run(context)
        let web = (mount.home as NSString).deletingLastPathComponent, slug = (mount.home as NSString).lastPathComponent
        let staging = ".desa-moving-" + slug
        let webDir = try DirHandle.open(web)
        try webDir.removeTree(staging)
        try webDir.ensureDir(staging, uid: 0, gid: 0, mode: 0o700)
        var staged = mount
        staged.home = web + "/" + staging
        do {
            try staged.run(context)
            let copy = try context.runner.run(["/usr/bin/setpriv", "--reuid=\(mount.uid)", "--regid=\(gid)", "--clear-groups", "--reset-env",
                                               "--", "/bin/cp", "-a", "--no-target-directory", mount.home + "/.", staged.home + "/"])
            guard copy.ok else { throw DesaError.system("copying \(mount.home) into its image as its user failed: \(copy.message)") }
            // The groups and modes the tenant could not give (the web server's group, setgid).
            try DirHandle.openHome(staged.home).matchGroupsAndModes(of: DirHandle.openHome(mount.home))
            try UnmountImage(home: staged.home).run(context)
        } catch {
            try? UnmountImage(home: staged.home).run(context)
            try? webDir.removeTree(staging)
            unlink(make.image)
            throw error
        }
        // The old tree goes aside (a rename in the web root), the image takes the home's
        // place, then the old tree is removed.
        let old = ".desa-old-" + slug
        try webDir.removeTree(old)
        try webDir.move(slug, to: webDir, as: old)
        try webDir.move(staging, to: webDir, as: slug)
        try mount.run(context)
        try webDir.removeTree(old)
    }
}

struct UnmountImage: CustomEffect {
    var home: String
    var subject: String { home }

    func run(_ context: ApplyContext) throws {
        guard Mounts.table()[home] != nil else { return }
        var last = ""
        for _ in 0..<5 {
            let r = try context.runner.run(["/bin/umount", home])
            if r.ok || Mounts.table()[home] == nil { return }
            last = r.message
            context.time.sleep(0.2)
        }
        throw DesaError.system("cannot unmount \(home): \(last)")
    }
}

/// A deleted tenant's image goes into the archive beside its home.
struct ArchiveImage: CustomEffect {
    var image: String
    var to: String
    var subject: String { "\(image) -> \(to)" }

    func run(_ context: ApplyContext) throws {
        if rename(image, to) == 0 { return }
        let r = try context.runner.run(["/bin/mv", "--no-clobber", "--", image, to])
        guard r.ok else { throw DesaError.system("cannot archive \(image): \(r.message)") }
        chmod(to, 0o600)
    }
}

struct PurgeImage: CustomEffect {
    var image: String
    var subject: String { image }

    func run(_ context: ApplyContext) throws {
        if unlink(image) != 0 && errno != ENOENT { throw DesaError.system("cannot remove \(image): \(errnoText())") }
    }
}

enum Quota {
    static func run(_ context: ApplyContext, _ argv: [String], _ what: String) throws {
        let r = try context.runner.run(argv)
        guard r.ok else { throw DesaError.system("\(what) failed: \(r.message)") }
    }
}
