import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A DNS server's address: `127.0.0.1`, `127.0.0.1:5353`, `::1`, `[::1]:5353`, or a host name.
struct DNSEndpoint: Sendable {
    /// As shown in messages: `127.0.0.1:53`, `[::1]:53`.
    let display: String
    let family: Int32
    /// The `sockaddr` bytes.
    let address: [UInt8]

    init(_ server: String) throws {
        var host = server, port = "53"
        if server.hasPrefix("[") {
            guard let close = server.firstIndex(of: "]") else {
                throw DesaError.invalid("the DNS server \(Quote.show(server)) has no closing ']'")
            }
            host = String(server[server.index(after: server.startIndex)..<close])
            let rest = server[server.index(after: close)...]
            if !rest.isEmpty {
                guard rest.hasPrefix(":") else { throw DesaError.invalid("the DNS server \(Quote.show(server)) is not [ADDRESS]:PORT") }
                port = String(rest.dropFirst())
            }
        } else if server.filter({ $0 == ":" }).count == 1, let colon = server.firstIndex(of: ":") {
            host = String(server[..<colon])
            port = String(server[server.index(after: colon)...])
        }
        guard let p = UInt16(port), p > 0 else {
            throw DesaError.invalid("the DNS server \(Quote.show(server)) has no valid port (\(Quote.show(port)))")
        }
        guard !host.isEmpty else { throw DesaError.invalid("the DNS server \(Quote.show(server)) has no address") }
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_DGRAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV
        var result: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, port, &hints, &result)
        guard rc == 0, let first = result else {
            throw DesaError(.config, "cannot resolve the DNS server \(Quote.show(host)): \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(result) }
        family = first.pointee.ai_family
        address = Array(UnsafeRawBufferPointer(start: first.pointee.ai_addr, count: Int(first.pointee.ai_addrlen)))
        display = family == AF_INET6 ? "[\(host)]:\(p)" : "\(host):\(p)"
    }
}

/// What an answer must match: the ID and the question of the query it answers.
struct DNSExpectation {
    var id: UInt16
    var question: DNSQuestion
}

/// One request, one response: over UDP (resent twice before the deadline), then over TCP
/// when the UDP answer is truncated. Packets that do not answer the request (wrong ID, not a
/// response, another question) are ignored and named in the timeout error; an answer that
/// matches but cannot be parsed is an error at once.
enum DNSTransport {
    static func exchange(_ request: [UInt8], with endpoint: DNSEndpoint, expect: DNSExpectation,
                         timeout: Duration) throws -> DNSMessage {
        let deadline = ContinuousClock.now + timeout
        if let answer = try udp(request, endpoint, expect, timeout: timeout, deadline: deadline) {
            return answer
        }
        return try tcp(request, endpoint, expect, deadline: deadline)
    }

    /// Nil when the answer is truncated (TC): ask again over TCP.
    private static func udp(_ request: [UInt8], _ ep: DNSEndpoint, _ expect: DNSExpectation,
                            timeout: Duration, deadline: ContinuousClock.Instant) throws -> DNSMessage? {
        let fd = socket(ep.family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw DesaError.system("cannot open a UDP socket: \(errnoText())") }
        defer { close(fd) }
        // A connected socket only receives from the server's address and port.
        guard connect(fd, ep) == 0 else { throw DesaError.system("cannot reach the DNS server \(ep.display): \(errnoText())") }
        var ignored: [String] = []
        var buffer = [UInt8](repeating: 0, count: 65535)
        let attempts = 3
        for attempt in 1...attempts {
            let sent = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if sent < 0 && errno == ECONNREFUSED { throw refused(ep) }
            guard sent == request.count else { throw DesaError.system("cannot send to the DNS server \(ep.display): \(errnoText())") }
            let attemptEnd = attempt == attempts ? deadline : min(deadline, ContinuousClock.now + timeout / attempts)
            while let wait = milliseconds(until: attemptEnd) {
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                let rc = poll(&p, 1, wait)
                if rc < 0 && errno == EINTR { continue }
                guard rc >= 0 else { throw DesaError.system("poll: \(errnoText())") }
                if rc == 0 { break }
                let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n < 0 {
                    if errno == ECONNREFUSED { throw refused(ep) }
                    if errno == EINTR || errno == EAGAIN { continue }
                    throw DesaError.system("cannot receive from the DNS server \(ep.display): \(errnoText())")
                }
                let packet = Array(buffer[0..<n])
                switch try classify(packet, ep, expect, overTCP: false) {
                case .answer(let m): return m
                case .truncated: return nil
                case .ignore(let why): ignored.append(why)
                }
            }
        }
        var text = "no answer from the DNS server \(ep.display) within \(seconds(timeout))"
        if !ignored.isEmpty {
            let shown = ignored.prefix(3).joined(separator: "; ")
            text += "; ignored \(ignored.count) packet\(ignored.count == 1 ? "" : "s") that did not answer the query (\(shown)\(ignored.count > 3 ? "; ..." : ""))"
        }
        throw DesaError.system(text)
    }

    private static func tcp(_ request: [UInt8], _ ep: DNSEndpoint, _ expect: DNSExpectation,
                            deadline: ContinuousClock.Instant) throws -> DNSMessage {
        let fd = socket(ep.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw DesaError.system("cannot open a TCP socket: \(errnoText())") }
        defer { close(fd) }
        let what = "the DNS server \(ep.display) over TCP (the UDP answer was truncated)"
        if connect(fd, ep) != 0 {
            guard errno == EINPROGRESS else {
                throw errno == ECONNREFUSED ? refused(ep) : DesaError.system("cannot connect to \(what): \(errnoText())")
            }
            try wait(fd, for: Int16(POLLOUT), until: deadline, what)
            var error: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
            guard error == 0 else {
                throw DesaError.system("cannot connect to \(what): \(String(cString: strerror(error)))")
            }
        }
        var framed: [UInt8] = [UInt8(request.count >> 8), UInt8(request.count & 0xff)] + request
        while !framed.isEmpty {
            try wait(fd, for: Int16(POLLOUT), until: deadline, what)
            let n = framed.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw DesaError.system("cannot send to \(what): \(errnoText())")
            }
            framed.removeFirst(n)
        }
        let prefix = try read(fd, count: 2, until: deadline, what)
        let body = try read(fd, count: Int(prefix[0]) << 8 | Int(prefix[1]), until: deadline, what)
        switch try classify(body, ep, expect, overTCP: true) {
        case .answer(let m): return m
        case .truncated: throw DesaError.system("\(what) sent a truncated answer")
        case .ignore(let why): throw DesaError.system("\(what) sent \(why)")
        }
    }

    private enum Verdict { case answer(DNSMessage), truncated, ignore(String) }

    private static func classify(_ packet: [UInt8], _ ep: DNSEndpoint, _ expect: DNSExpectation,
                                 overTCP: Bool) throws -> Verdict {
        guard let id = DNSMessage.peekID(packet) else {
            return .ignore("a \(packet.count)-byte packet, too short for a DNS header")
        }
        guard id == expect.id else {
            return .ignore("an answer with ID \(id), not \(expect.id)")
        }
        guard packet[2] & 0x80 != 0 else { return .ignore("a packet with ID \(id) that is not a response") }
        if !overTCP && packet[2] & 0x02 != 0 { return .truncated }
        let message: DNSMessage
        do {
            message = try DNSMessage(parsing: packet)
        } catch {
            throw DesaError.system("the DNS server \(ep.display) sent a malformed answer: \(error)")
        }
        if message.questions.isEmpty {
            // Error answers (FORMERR, NOTIMP) may leave the question out.
            return message.rcode != 0 ? .answer(message) : .ignore("an answer without a question")
        }
        guard message.questions == [expect.question] else {
            let q = message.questions[0]
            return .ignore("an answer to another question (\(q.name.isEmpty ? "." : q.name) type \(q.type))")
        }
        return .answer(message)
    }

    private static func connect(_ fd: Int32, _ ep: DNSEndpoint) -> Int32 {
        ep.address.withUnsafeBytes {
            Glibc.connect(fd, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t($0.count))
        }
    }

    private static func wait(_ fd: Int32, for events: Int16, until deadline: ContinuousClock.Instant, _ what: String) throws {
        while true {
            guard let ms = milliseconds(until: deadline) else {
                throw DesaError.system("no answer from \(what) before the deadline")
            }
            var p = pollfd(fd: fd, events: events, revents: 0)
            let rc = poll(&p, 1, ms)
            if rc < 0 && errno == EINTR { continue }
            guard rc >= 0 else { throw DesaError.system("poll: \(errnoText())") }
            if rc > 0 { return }
        }
    }

    private static func read(_ fd: Int32, count: Int, until deadline: ContinuousClock.Instant, _ what: String) throws -> [UInt8] {
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: max(count, 1))
        while out.count < count {
            try wait(fd, for: Int16(POLLIN), until: deadline, what)
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, count - out.count, 0) }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw DesaError.system("cannot receive from \(what): \(errnoText())")
            }
            guard n > 0 else {
                throw DesaError.system("\(what) closed the connection after \(out.count) of \(count) bytes (truncated)")
            }
            out.append(contentsOf: buffer[0..<n])
        }
        return out
    }

    /// Milliseconds left for poll, nil once the deadline has passed.
    private static func milliseconds(until deadline: ContinuousClock.Instant) -> Int32? {
        let left = deadline - ContinuousClock.now
        guard left > .zero else { return nil }
        let (s, atto) = left.components
        return Int32(clamping: s * 1000 + atto / 1_000_000_000_000_000 + 1)
    }

    private static func refused(_ ep: DNSEndpoint) -> DesaError {
        DesaError.system("the DNS server \(ep.display) refused the connection (nothing listens there?)")
    }

    static func seconds(_ d: Duration) -> String {
        let (s, atto) = d.components
        let tenths = atto / 100_000_000_000_000_000
        return tenths == 0 ? "\(s) s" : "\(s).\(tenths) s"
    }
}
