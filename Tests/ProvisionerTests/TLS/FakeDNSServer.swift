import Foundation
@testable import Provisioner

/// A hostile or scripted DNS server for tests of what BIND never sends: a UDP socket (and,
/// with `tcp`, a TCP listener) on 127.0.0.1:`port` that answers each request with the
/// packets `reply` makes of it (none: silence). Runs on a thread of its own until `stop()`.
final class FakeDNSServer: @unchecked Sendable {
    let port: UInt16
    var server: String { "127.0.0.1:\(port)" }
    private let udp: Int32
    private let tcp: Int32
    private let reply: @Sendable (_ request: [UInt8], _ overTCP: Bool) -> [[UInt8]]
    private let lock = NSLock()
    private var stopping = false
    private var requests = 0
    private let done = DispatchSemaphore(value: 0)

    init(port: UInt16, tcp withTCP: Bool = false,
         reply: @escaping @Sendable (_ request: [UInt8], _ overTCP: Bool) -> [[UInt8]]) throws {
        self.port = port
        self.reply = reply
        udp = try Self.bound(port, type: Int32(SOCK_DGRAM.rawValue))
        tcp = withTCP ? try Self.bound(port, type: Int32(SOCK_STREAM.rawValue)) : -1
        if tcp >= 0 { listen(tcp, 4) }
        let thread = Thread { [self] in serve(); done.signal() }
        thread.start()
    }

    /// How many requests arrived.
    var requestCount: Int { lock.lock(); defer { lock.unlock() }; return requests }

    func stop() {
        lock.lock(); stopping = true; lock.unlock()
        done.wait()
        close(udp)
        if tcp >= 0 { close(tcp) }
    }

    private var isStopping: Bool { lock.lock(); defer { lock.unlock() }; return stopping }

    private func serve() {
        var buffer = [UInt8](repeating: 0, count: 65535)
        while !isStopping {
            var fds = [pollfd(fd: udp, events: Int16(POLLIN), revents: 0), pollfd(fd: tcp, events: Int16(POLLIN), revents: 0)]
            guard poll(&fds, tcp >= 0 ? 2 : 1, 50) > 0 else { continue }
            if fds[0].revents != 0 {
                var from = sockaddr_storage()
                var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
                let n = buffer.withUnsafeMutableBytes { b in
                    withUnsafeMutablePointer(to: &from) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(udp, b.baseAddress, b.count, 0, $0, &length) }
                    }
                }
                guard n > 0 else { continue }
                count()
                for packet in reply(Array(buffer[0..<n]), false) {
                    _ = packet.withUnsafeBytes { p in
                        withUnsafePointer(to: &from) {
                            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(udp, p.baseAddress, p.count, 0, $0, length) }
                        }
                    }
                }
            }
            if tcp >= 0 && fds[1].revents != 0 {
                let conn = accept(tcp, nil, nil)
                guard conn >= 0 else { continue }
                var tv = timeval(tv_sec: 2, tv_usec: 0)
                setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                if let prefix = readAll(conn, 2), let request = readAll(conn, Int(prefix[0]) << 8 | Int(prefix[1])) {
                    count()
                    for packet in reply(request, true) {
                        let framed = [UInt8(packet.count >> 8), UInt8(packet.count & 0xff)] + packet
                        _ = framed.withUnsafeBytes { send(conn, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                    }
                }
                close(conn)
            }
        }
    }

    private func count() { lock.lock(); requests += 1; lock.unlock() }

    private func readAll(_ fd: Int32, _ count: Int) -> [UInt8]? {
        var out = [UInt8](), buffer = [UInt8](repeating: 0, count: 65535)
        while out.count < count {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, count - out.count, 0) }
            guard n > 0 else { return nil }
            out += buffer[0..<n]
        }
        return out
    }

    private static func bound(_ port: UInt16, type: Int32) throws -> Int32 {
        let fd = socket(AF_INET, type | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw DesaError.system("socket: \(String(cString: strerror(errno)))") }
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            close(fd)
            throw DesaError.system("bind 127.0.0.1:\(port): \(String(cString: strerror(errno)))")
        }
        return fd
    }

    // MARK: - Building answers

    /// The request's header and question with QR (and `flags`) set and the given counts:
    /// the start of an answer that matches it.
    static func answerHead(_ request: [UInt8], flags: UInt16 = 0x8400, an: UInt16 = 0, ns: UInt16 = 0, ar: UInt16 = 0) -> [UInt8] {
        guard let m = try? DNSMessage(parsing: request), m.questions.count == 1 else { return [] }
        var r = DNSReader(bytes: request, pos: 12)
        _ = try? r.name()
        let questionEnd = r.pos + 4
        var w = DNSWriter()
        w.header(id: m.id, flags: flags | (m.opcode << 11), qd: 1, an: an, ns: ns, ar: ar)
        w.append(Array(request[12..<questionEnd]))
        return w.bytes
    }

    /// Signs an answer as a server would (RFC 8945 §4.3.3: the request's MAC first).
    static func sign(answer: [UInt8], request: [UInt8], key: TSIGKey, timeSigned: UInt64) -> [UInt8] {
        guard let m = try? DNSMessage(parsing: request), let t = try? TSIG.record(in: m) else { return answer }
        var data = DNSWriter()
        data.u16(UInt16(t.mac.count)); data.append(t.mac); data.append(answer)
        data.append(TSIG.variables(key: key, timeSigned: timeSigned, fudge: 300, error: 0, other: []))
        let mac = key.algorithm.mac(key: key.secret, data: data.bytes)
        var rdata = DNSWriter()
        rdata.name(key.algorithm.wireName); rdata.u48(timeSigned); rdata.u16(300)
        rdata.u16(UInt16(mac.count)); rdata.append(mac); rdata.u16(m.id); rdata.u16(0); rdata.u16(0)
        var w = DNSWriter(bytes: answer)
        w.record(name: key.name, type: DNSConst.typeTSIG, cls: DNSConst.classANY, ttl: 0, rdata: rdata.bytes)
        w.bytes[11] += 1
        return w.bytes
    }
}
