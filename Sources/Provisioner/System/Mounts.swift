import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What is mounted where, from /proc/self/mountinfo (read once per look), and the file
/// behind a loop device.
public enum Mounts {
    public struct Entry: Sendable, Equatable {
        public var mountPoint: String
        public var source: String
        public var fsType: String
    }

    /// The mount table by mount point (the last mount on a point, the one in effect).
    public static func table(_ text: String? = AtomicFiles.read("/proc/self/mountinfo")) -> [String: Entry] {
        var out: [String: Entry] = [:]
        for line in (text ?? "").split(separator: "\n") {
            let f = line.split(separator: " ", omittingEmptySubsequences: false)
            guard let dash = f.firstIndex(of: "-"), f.count > dash + 2, f.count > 4 else { continue }
            let point = unescape(f[4])
            out[point] = Entry(mountPoint: point, source: unescape(f[dash + 2]), fsType: String(f[dash + 1]))
        }
        return out
    }

    /// mountinfo writes space, tab, newline and backslash as `\ooo`.
    static func unescape(_ s: Substring) -> String {
        guard s.contains("\\") else { return String(s) }
        var bytes: [UInt8] = []
        var u = Array(s.utf8)[...]
        while let c = u.popFirst() {
            if c == UInt8(ascii: "\\"), u.count >= 3, let v = UInt8(String(decoding: u.prefix(3), as: UTF8.self), radix: 8) {
                bytes.append(v); u = u.dropFirst(3)
            } else {
                bytes.append(c)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The file a loop device (`/dev/loop3`) reads, as the kernel has it.
    public static func loopBackingFile(_ device: String) -> String? {
        guard device.hasPrefix("/dev/loop") else { return nil }
        let name = (device as NSString).lastPathComponent
        return AtomicFiles.read("/sys/block/\(name)/loop/backing_file")?.trimmingCharacters(in: .newlines)
    }

    /// The loop device (`loop3`) whose filesystem is mounted at `path`, when `path` is the
    /// root of a mount (its device differs from its parent's) and that device is a loop.
    public static func loopDevice(mountedAt path: String) -> String? {
        var st = stat(), up = stat()
        guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR,
              lstat((path as NSString).deletingLastPathComponent, &up) == 0, st.st_dev != up.st_dev else { return nil }
        let dev = UInt64(st.st_dev)
        // Linux's encoding of a device number (glibc's gnu_dev_major/minor).
        let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & ~UInt64(0xfff))
        let minor = (dev & 0xff) | ((dev >> 12) & ~UInt64(0xff))
        let sys = "/sys/dev/block/\(major):\(minor)"
        guard access(sys + "/loop", F_OK) == 0,
              let target = try? FileManager.default.destinationOfSymbolicLink(atPath: sys) else { return nil }
        let name = (target as NSString).lastPathComponent
        return name.hasPrefix("loop") ? name : nil
    }

    /// One process's loop devices are taken one at a time: LOOP_CTL_GET_FREE names the
    /// same free device to every thread that asks before one of them configures it.
    private static let loopLock = NSLock()

    /// Mounts the filesystem in `image` at `path` through a loop device of its own, in this
    /// process (LOOP_CTL_GET_FREE, LOOP_CONFIGURE, mount(2)): mount(8) costs a process and a
    /// look at every loop device in use, 9 ms a tenant at 280. The device clears itself when
    /// the filesystem is unmounted (`LO_FLAGS_AUTOCLEAR`), as mount(8)'s `loop` option does.
    /// Returns the device (`/dev/loop12`).
    public static func mountLoop(_ image: String, at path: String, fsType: String, flags: UInt, data: String) throws -> String {
        let backing = open(image, O_RDWR | O_CLOEXEC | O_NOFOLLOW)
        guard backing >= 0 else { throw DesaError.system("cannot open \(image): \(errnoText())") }
        defer { close(backing) }
        let control = open("/dev/loop-control", O_RDWR | O_CLOEXEC)
        guard control >= 0 else { throw DesaError.system("cannot open /dev/loop-control: \(errnoText())") }
        defer { close(control) }
        // struct loop_config: fd, block_size, struct loop_info64 (lo_flags at 52,
        // lo_file_name[64] at 56), 8 reserved words: 304 bytes.
        var config = [UInt8](repeating: 0, count: 304)
        withUnsafeBytes(of: UInt32(backing).littleEndian) { config.replaceSubrange(0..<4, with: $0) }
        withUnsafeBytes(of: UInt32(4).littleEndian) { config.replaceSubrange(60..<64, with: $0) }  // LO_FLAGS_AUTOCLEAR
        let name = Array(image.utf8.prefix(63))
        config.replaceSubrange(64..<(64 + name.count), with: name)
        var device = "", loop: Int32 = -1, lastError = "", busy = false
        for _ in 0..<20 {
            let configured: Bool = loopLock.withLock {
                let n = ioctl(control, 0x4C82)  // LOOP_CTL_GET_FREE
                guard n >= 0 else { lastError = "no free loop device: \(errnoText())"; return false }
                device = "/dev/loop\(n)"
                loop = open(device, O_RDWR | O_CLOEXEC)
                guard loop >= 0 else { lastError = "cannot open \(device): \(errnoText())"; return false }
                let rc = config.withUnsafeMutableBytes { ioctl(loop, 0x4C0A, $0.baseAddress!) }  // LOOP_CONFIGURE
                if rc == 0 { return true }
                busy = errno == EBUSY
                lastError = "cannot attach \(image) to \(device): \(errnoText())"
                close(loop); loop = -1
                return false
            }
            if configured { break }
            // Another process took the device between asking and configuring.
            if !busy { break }
        }
        guard loop >= 0 else { throw DesaError.system(lastError) }
        // The mount holds the device; closing ours lets AUTOCLEAR free it at unmount.
        defer { close(loop) }
        guard mount(device, path, fsType, flags, data) == 0 else {
            throw DesaError.system("cannot mount \(image) (\(device)) at \(path): \(errnoText())")
        }
        return device
    }

    /// A filesystem's counters (`statvfs`): what the tenant's quota report reads, never a walk of its files.
    public struct Usage: Sendable, Equatable {
        /// Bytes in use, and the most an unprivileged user may have (in use plus available to it).
        public var usedBytes: Int64
        public var limitBytes: Int64
        public var usedInodes: Int64
        public var limitInodes: Int64
        /// Blocks only root may use (the image backend's headroom), and the block size.
        public var reservedBlocks: Int64
        public var totalBlocks: Int64
        public var blockSize: Int64
    }

    public static func usage(_ path: String) -> Usage? {
        var st = statvfs()
        guard statvfs(path, &st) == 0 else { return nil }
        let bs = Int64(st.f_frsize)
        let used = Int64(st.f_blocks) - Int64(st.f_bfree)
        return Usage(usedBytes: used * bs, limitBytes: (used + Int64(st.f_bavail)) * bs,
                     usedInodes: Int64(st.f_files) - Int64(st.f_ffree), limitInodes: Int64(st.f_files),
                     reservedBlocks: Int64(st.f_bfree) - Int64(st.f_bavail), totalBlocks: Int64(st.f_blocks), blockSize: bs)
    }
}
