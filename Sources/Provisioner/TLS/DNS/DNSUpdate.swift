import Crypto
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A TSIG key (RFC 8945) as BIND's `tsig-keygen` writes it:
/// `key "NAME" { algorithm hmac-sha256; secret "BASE64"; };`
public struct TSIGKey: Sendable, Equatable {
    public enum Algorithm: String, Sendable { case hmacSHA256 = "hmac-sha256", hmacSHA512 = "hmac-sha512" }
    public var name: String
    public var algorithm: Algorithm
    public var secret: [UInt8]

    public init(name: String, algorithm: Algorithm, secret: [UInt8]) {
        self.name = name; self.algorithm = algorithm; self.secret = secret
    }

    /// Reads a key file; one that others may read is refused.
    public static func load(path: String) throws -> TSIGKey {
        var st = stat()
        guard stat(path, &st) == 0 else { throw DesaError(.config, "tls.tsig_key_file \(path) cannot be read") }
        guard st.st_mode & 0o077 == 0 else {
            throw DesaError(.config, "tls.tsig_key_file \(path) is readable by others (mode \(String(st.st_mode & 0o777, radix: 8))); chmod 600 it")
        }
        return try parse(AtomicFiles.read(path) ?? "", source: path)
    }

    public static func parse(_ text: String, source: String = "key") throws -> TSIGKey {
        func field(_ pattern: String) -> String? {
            guard let r = text.range(of: pattern, options: .regularExpression) else { return nil }
            let m = String(text[r])
            guard let q1 = m.firstIndex(of: "\""), let q2 = m[m.index(after: q1)...].firstIndex(of: "\"") else {
                return m.split(separator: " ").last.map { $0.trimmingCharacters(in: CharacterSet(charactersIn: ";")) }
            }
            return String(m[m.index(after: q1)..<q2])
        }
        guard let name = field("key\\s+\"[^\"]+\""), let alg = field("algorithm\\s+[A-Za-z0-9-]+"),
              let secret = field("secret\\s+\"[^\"]+\""), let bytes = Data(base64Encoded: secret) else {
            throw DesaError(.config, "\(source) is not a BIND key file (key \"NAME\" { algorithm hmac-sha256; secret \"...\"; };)")
        }
        guard let a = Algorithm(rawValue: alg.lowercased()) else {
            throw DesaError(.config, "\(source): algorithm \(alg) is not supported (hmac-sha256 or hmac-sha512)")
        }
        _ = try DNSName.wire(name)
        return TSIGKey(name: name, algorithm: a, secret: [UInt8](bytes))
    }

    func mac(_ data: [UInt8]) -> [UInt8] {
        let key = SymmetricKey(data: secret)
        switch algorithm {
        case .hmacSHA256: return [UInt8](HMAC<SHA256>.authenticationCode(for: data, using: key))
        case .hmacSHA512: return [UInt8](HMAC<SHA512>.authenticationCode(for: data, using: key))
        }
    }
}

/// Domain names on the wire: validated LDH labels (and `_acme-challenge`), lowercase.
enum DNSName {
    static func wire(_ name: String) throws -> [UInt8] {
        let n = name.hasSuffix(".") ? String(name.dropLast()) : name
        guard !n.isEmpty, n.utf8.count <= 253 else { throw DesaError.invalid("\(Quote.show(name)) is not a DNS name") }
        var out: [UInt8] = []
        for label in n.lowercased().split(separator: ".", omittingEmptySubsequences: false) {
            guard (1...63).contains(label.utf8.count),
                  label.utf8.allSatisfy({ ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 45 || $0 == 95 }) else {
                throw DesaError.invalid("\(Quote.show(name)) is not a DNS name (letters, digits, - and _ in labels of 1 to 63)")
            }
            out.append(UInt8(label.utf8.count))
            out += Array(label.utf8)
        }
        return out + [0]
    }
}

/// Dynamic DNS updates (RFC 2136) signed with TSIG (RFC 8945), over UDP with a TCP
/// fallback, and plain TXT queries to the same (authoritative) server. Blocking I/O with a
/// deadline per exchange; a garbage answer is an error, never a crash or a hang.
public struct DNSUpdateClient: Sendable {
    public var server: String
    public var port: UInt16
    public var key: TSIGKey
    public var zone: String
    public var timeout: TimeInterval

    public init(server: String, key: TSIGKey, zone: String, timeout: TimeInterval = 5) throws {
        let parts = server.split(separator: ":")
        guard let host = parts.first, parts.count <= 2, inet_addr(String(host)) != INADDR_NONE else {
            throw DesaError(.config, "tls.dns_server \(Quote.show(server)) must be an IPv4 ADDRESS[:PORT]")
        }
        self.server = String(host)
        self.port = parts.count == 2 ? UInt16(parts[1]) ?? 53 : 53
        self.key = key; self.zone = zone; self.timeout = timeout
    }

    static let typeTXT: UInt16 = 16, typeSOA: UInt16 = 6, typeTSIG: UInt16 = 250
    static let classIN: UInt16 = 1, classNONE: UInt16 = 254, classANY: UInt16 = 255

    public func addTXT(name: String, value: String, ttl: UInt32 = 60) throws {
        try update(name: name, value: value, rrClass: Self.classIN, ttl: ttl, what: "adding TXT \(name)")
    }

    /// Deletes exactly this record (other values at the name stay).
    public func deleteTXT(name: String, value: String) throws {
        try update(name: name, value: value, rrClass: Self.classNONE, ttl: 0, what: "deleting TXT \(name)")
    }

    func update(name: String, value: String, rrClass: UInt16, ttl: UInt32, what: String) throws {
        guard name.lowercased() == zone.lowercased() || name.lowercased().hasSuffix("." + zone.lowercased()) else {
            throw DesaError.invalid("\(name) is not in the zone \(zone)")
        }
        guard !value.isEmpty, value.utf8.count <= 255, value.utf8.allSatisfy({ $0 >= 32 && $0 < 127 }) else {
            throw DesaError.invalid("a TXT value must be 1 to 255 printable ASCII characters")
        }
        let id = UInt16.random(in: 0...UInt16.max)
        var m = DNSWriter()
        m.u16(id); m.u16(5 << 11)                  // opcode UPDATE
        m.u16(1); m.u16(0); m.u16(1); m.u16(0)     // zone, prerequisites, updates, additional
        m.bytes(try DNSName.wire(zone)); m.u16(Self.typeSOA); m.u16(Self.classIN)
        m.bytes(try DNSName.wire(name)); m.u16(Self.typeTXT); m.u16(rrClass); m.u32(ttl)
        let txt = [UInt8(value.utf8.count)] + Array(value.utf8)
        m.u16(UInt16(txt.count)); m.bytes(txt)
        let signed = try sign(m.data, id: id)
        let answer = try exchange(signed, id: id)
        try check(answer, what: what)
    }

    /// Appends the TSIG record (RFC 8945 §4.2), MAC over the message and the TSIG variables.
    func sign(_ message: [UInt8], id: UInt16, now: Date = Date()) throws -> [UInt8] {
        let keyName = try DNSName.wire(key.name), alg = try DNSName.wire(key.algorithm.rawValue)
        let time = UInt64(now.timeIntervalSince1970)
        var vars = DNSWriter()
        vars.bytes(keyName); vars.u16(Self.classANY); vars.u32(0)
        vars.bytes(alg); vars.u48(time); vars.u16(300); vars.u16(0); vars.u16(0)
        let mac = key.mac(message + vars.data)
        var rdata = DNSWriter()
        rdata.bytes(alg); rdata.u48(time); rdata.u16(300); rdata.u16(UInt16(mac.count)); rdata.bytes(mac)
        rdata.u16(id); rdata.u16(0); rdata.u16(0)
        var out = message
        let ar = UInt16(out[10]) << 8 | UInt16(out[11]) + 1
        out[10] = UInt8(ar >> 8); out[11] = UInt8(ar & 0xff)
        var rr = DNSWriter()
        rr.bytes(keyName); rr.u16(Self.typeTSIG); rr.u16(Self.classANY); rr.u32(0); rr.u16(UInt16(rdata.data.count)); rr.bytes(rdata.data)
        return out + rr.data
    }

    /// The TXT values at `name`, as the server answers now.
    public func queryTXT(name: String) throws -> [String] {
        let id = UInt16.random(in: 0...UInt16.max)
        var m = DNSWriter()
        m.u16(id); m.u16(0); m.u16(1); m.u16(0); m.u16(0); m.u16(0)
        m.bytes(try DNSName.wire(name)); m.u16(Self.typeTXT); m.u16(Self.classIN)
        let answer = try exchange(m.data, id: id)
        var r = DNSReader(answer)
        let header = try r.header()
        guard header.rcode == 0 || header.rcode == 3 else { throw DesaError.system("DNS query of \(name) at \(server): \(Self.rcode(header.rcode))") }
        for _ in 0..<header.qd { _ = try r.name(); try r.skip(4) }
        var out: [String] = []
        for _ in 0..<header.an {
            _ = try r.name()
            let type = try r.u16(); try r.skip(6)
            let len = Int(try r.u16())
            let data = try r.take(len)
            guard type == Self.typeTXT else { continue }
            var i = 0, value = ""
            while i < data.count {
                let n = Int(data[i]); i += 1
                guard i + n <= data.count else { throw DesaError.system("a TXT record from \(server) is cut short") }
                value += String(decoding: data[i..<(i + n)], as: UTF8.self); i += n
            }
            out.append(value)
        }
        return out
    }

    func check(_ answer: [UInt8], what: String) throws {
        var r = DNSReader(answer)
        let h = try r.header()
        guard h.opcode == 5 else { throw DesaError.system("\(what): \(server) answered with opcode \(h.opcode), not an update") }
        guard h.rcode == 0 else {
            var detail = Self.rcode(h.rcode)
            if h.rcode == 9, let tsig = try? Self.tsigError(answer) { detail += " (\(tsig): the server does not accept key \(key.name) as given)" }
            throw DesaError(.checkFailed, "\(what): the DNS server \(server):\(port) refused the update: \(detail)")
        }
    }

    /// The TSIG error of an answer (BADSIG, BADKEY, BADTIME), if it carries one.
    static func tsigError(_ answer: [UInt8]) throws -> String {
        var r = DNSReader(answer)
        let h = try r.header()
        for _ in 0..<h.qd { _ = try r.name(); try r.skip(4) }
        for _ in 0..<(Int(h.an) + Int(h.ns)) { _ = try r.name(); try r.skip(8); try r.skip(Int(try r.u16())) }
        for _ in 0..<h.ar {
            _ = try r.name()
            let type = try r.u16(); try r.skip(6)
            let len = Int(try r.u16())
            var d = DNSReader(try r.take(len))
            guard type == typeTSIG else { continue }
            _ = try d.name(); try d.skip(8)
            try d.skip(Int(try d.u16())); try d.skip(2)
            switch try d.u16() {
            case 16: return "BADSIG"
            case 17: return "BADKEY"
            case 18: return "BADTIME"
            case let e: return "TSIG error \(e)"
            }
        }
        return "no TSIG in the answer"
    }

    static func rcode(_ c: UInt8) -> String {
        switch c {
        case 1: return "FORMERR"
        case 2: return "SERVFAIL"
        case 3: return "NXDOMAIN"
        case 4: return "NOTIMP"
        case 5: return "REFUSED"
        case 9: return "NOTAUTH"
        case 10: return "NOTZONE (the name is not in the zone)"
        default: return "RCODE \(c)"
        }
    }

    /// One request and its answer: UDP, and TCP when the answer is truncated.
    func exchange(_ message: [UInt8], id: UInt16) throws -> [UInt8] {
        var attempt = 0
        while true {
            attempt += 1
            do {
                let answer = try udp(message, id: id)
                if answer.count > 2 && answer[2] & 0x02 != 0 { return try tcp(message, id: id) }
                return answer
            } catch let e as DesaError where e.message.contains("no answer") && attempt < 3 {
                continue
            }
        }
    }

    func address() -> sockaddr_in {
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = port.bigEndian
        a.sin_addr.s_addr = inet_addr(server)
        return a
    }

    func udp(_ message: [UInt8], id: UInt16) throws -> [UInt8] {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw DesaError.system("socket: \(errnoText())") }
        defer { close(fd) }
        var a = address()
        let sent = withUnsafePointer(to: &a) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, message, message.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard sent == message.count else { throw DesaError.system("cannot send to the DNS server \(server):\(port): \(errnoText())") }
        let deadline = Date().addingTimeInterval(timeout)
        var buf = [UInt8](repeating: 0, count: 65535)
        while true {
            let left = deadline.timeIntervalSinceNow
            guard left > 0 else { throw DesaError.system("no answer from the DNS server \(server):\(port) within \(Int(timeout)) s") }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&p, 1, Int32(left * 1000))
            if ready < 0 && errno == EINTR { continue }
            guard ready > 0 else { continue }
            let n = recv(fd, &buf, buf.count, 0)
            if n < 0 {
                if errno == ECONNREFUSED { throw DesaError.system("nothing answers DNS at \(server):\(port) (connection refused)") }
                continue
            }
            // Another answer (a late or forged one) is ignored: wait for ours.
            if n >= 12 && UInt16(buf[0]) << 8 | UInt16(buf[1]) == id { return Array(buf[0..<n]) }
        }
    }

    func tcp(_ message: [UInt8], id: UInt16) throws -> [UInt8] {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw DesaError.system("socket: \(errnoText())") }
        defer { close(fd) }
        var tv = timeval(tv_sec: Int(timeout), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var a = address()
        let ok = withUnsafePointer(to: &a) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard ok else { throw DesaError.system("cannot connect to the DNS server \(server):\(port) over TCP: \(errnoText())") }
        let framed = [UInt8(message.count >> 8), UInt8(message.count & 0xff)] + message
        guard send(fd, framed, framed.count, 0) == framed.count else { throw DesaError.system("cannot send to \(server):\(port): \(errnoText())") }
        func read(_ n: Int) throws -> [UInt8] {
            var out = [UInt8](repeating: 0, count: n), got = 0
            while got < n {
                let r = out.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + got, n - got, 0) }
                guard r > 0 else { throw DesaError.system("the DNS answer from \(server):\(port) over TCP is cut short") }
                got += r
            }
            return out
        }
        let len = try read(2)
        let answer = try read(Int(len[0]) << 8 | Int(len[1]))
        guard answer.count >= 12, UInt16(answer[0]) << 8 | UInt16(answer[1]) == id else {
            throw DesaError.system("the DNS server \(server):\(port) answered another request")
        }
        return answer
    }
}

struct DNSWriter {
    var data: [UInt8] = []
    mutating func u16(_ v: UInt16) { data += [UInt8(v >> 8), UInt8(v & 0xff)] }
    mutating func u32(_ v: UInt32) { data += [UInt8(v >> 24), UInt8(v >> 16 & 0xff), UInt8(v >> 8 & 0xff), UInt8(v & 0xff)] }
    mutating func u48(_ v: UInt64) { for s in stride(from: 40, through: 0, by: -8) { data.append(UInt8(v >> UInt64(s) & 0xff)) } }
    mutating func bytes(_ b: [UInt8]) { data += b }
}

/// Reads a DNS message, every read bounds-checked; compression pointers are followed at
/// most 32 times, so a loop in a hostile answer ends in an error.
struct DNSReader {
    let data: [UInt8]
    var at = 0
    init(_ d: [UInt8]) { data = d }

    struct Header { var opcode: UInt8; var rcode: UInt8; var qd: UInt16; var an: UInt16; var ns: UInt16; var ar: UInt16 }

    mutating func header() throws -> Header {
        guard data.count >= 12 else { throw DesaError.system("a DNS answer of \(data.count) bytes is too short") }
        let flags = UInt16(data[2]) << 8 | UInt16(data[3])
        at = 4
        return Header(opcode: UInt8(flags >> 11 & 0xf), rcode: UInt8(flags & 0xf), qd: try u16(), an: try u16(), ns: try u16(), ar: try u16())
    }

    mutating func u16() throws -> UInt16 {
        guard at + 2 <= data.count else { throw DesaError.system("a DNS answer is cut short") }
        defer { at += 2 }
        return UInt16(data[at]) << 8 | UInt16(data[at + 1])
    }

    mutating func skip(_ n: Int) throws {
        guard n >= 0, at + n <= data.count else { throw DesaError.system("a DNS answer is cut short") }
        at += n
    }

    mutating func take(_ n: Int) throws -> [UInt8] {
        guard n >= 0, at + n <= data.count else { throw DesaError.system("a DNS answer is cut short") }
        defer { at += n }
        return Array(data[at..<(at + n)])
    }

    mutating func name() throws -> String {
        var labels: [String] = [], pos = at, jumped = false, jumps = 0
        while true {
            guard pos < data.count else { throw DesaError.system("a name in a DNS answer runs past its end") }
            let len = Int(data[pos])
            if len == 0 { if !jumped { at = pos + 1 }; break }
            if len & 0xc0 == 0xc0 {
                guard pos + 1 < data.count else { throw DesaError.system("a DNS answer is cut short") }
                jumps += 1
                guard jumps <= 32 else { throw DesaError.system("a DNS answer has a loop of name pointers") }
                if !jumped { at = pos + 2 }
                jumped = true
                pos = (len & 0x3f) << 8 | Int(data[pos + 1])
                continue
            }
            guard len <= 63, pos + 1 + len <= data.count else { throw DesaError.system("a label in a DNS answer is malformed") }
            labels.append(String(decoding: data[(pos + 1)...(pos + len)], as: UTF8.self))
            pos += 1 + len
        }
        return labels.joined(separator: ".")
    }
}

/// DNS-01 through RFC 2136: the TXT record goes into the regency's zone on its own DNS
/// server, and is there (asked of that server) before the CA is told to look.
public struct RFC2136Responder: DNS01Responder {
    public var client: DNSUpdateClient
    public var wait: TimeInterval

    public init(server: String, key: TSIGKey, zone: String, wait: TimeInterval = 30) throws {
        client = try DNSUpdateClient(server: server, key: key, zone: zone)
        self.wait = wait
    }

    public func present(domain: String, txtValue: String) async throws {
        let name = "_acme-challenge." + domain
        let client = self.client, wait = self.wait
        try await Task.detached {
            try client.addTXT(name: name, value: txtValue)
            let deadline = Date().addingTimeInterval(wait)
            while try !client.queryTXT(name: name).contains(txtValue) {
                guard Date() < deadline else { throw DesaError.system("the TXT record \(name) did not appear at \(client.server) within \(Int(wait)) s") }
                try await Task.sleep(nanoseconds: 100_000_000)
            }
        }.value
    }

    public func cleanUp(domain: String, txtValue: String) async {
        let client = self.client
        _ = try? await Task.detached { try client.deleteTXT(name: "_acme-challenge." + domain, value: txtValue) }.value
    }
}
