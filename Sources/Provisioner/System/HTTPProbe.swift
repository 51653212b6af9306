import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A minimal HTTP/1.1 client for loopback health checks: one GET with a `Host:` header,
/// returning the status code and the beginning of the body.
public struct HTTPProbe: Sendable {
    public struct Response: Sendable {
        public var status: Int
        public var headers: [String: String]
        public var body: String
    }

    public var address: ProbeAddress
    public var timeout: TimeInterval

    public init(address: ProbeAddress, timeout: TimeInterval = 3) {
        self.address = address; self.timeout = timeout
    }

    public func get(host: String, path: String = "/") throws -> Response {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var res: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(address.host, String(address.port), &hints, &res) == 0, let ai = res else {
            throw DesaError.system("cannot resolve \(address.host)")
        }
        defer { freeaddrinfo(res) }
        let fd = socket(ai.pointee.ai_family, ai.pointee.ai_socktype, ai.pointee.ai_protocol)
        guard fd >= 0 else { throw DesaError.system("socket: \(errnoText())") }
        defer { close(fd) }
        var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        guard connect(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen) == 0 else {
            throw DesaError.system("cannot connect to \(address.host):\(address.port): \(errnoText())")
        }
        let request = "GET \(path) HTTP/1.1\r\nHost: \(host)\r\nUser-Agent: desa-probe\r\nConnection: close\r\n\r\n"
        let sent = request.withCString { send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
        guard sent > 0 else { throw DesaError.system("cannot send to \(address.host):\(address.port): \(errnoText())") }
        var data = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 16384)
        while data.count < 1 << 20 {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            data.append(contentsOf: buf[0..<n])
        }
        let text = String(decoding: data, as: UTF8.self)
        guard let headEnd = text.range(of: "\r\n\r\n") else {
            throw DesaError.system("no HTTP response from \(address.host):\(address.port) for Host: \(host)")
        }
        let lines = text[..<headEnd.lowerBound].split(separator: "\r\n")
        let statusParts = lines.first?.split(separator: " ") ?? []
        guard statusParts.count >= 2, let status = Int(statusParts[1]) else {
            throw DesaError.system("malformed HTTP status line from \(address.host):\(address.port)")
        }
        var headers: [String: String] = [:]
        for l in lines.dropFirst() {
            if let c = l.firstIndex(of: ":") {
                headers[l[..<c].lowercased()] = l[l.index(after: c)...].trimmingCharacters(in: .whitespaces)
            }
        }
        var body = String(text[headEnd.upperBound...])
        if headers["transfer-encoding"]?.lowercased() == "chunked" { body = Self.dechunk(body) }
        return Response(status: status, headers: headers, body: body)
    }

    /// Joins a chunked body (RFC 9112 section 7.1); trailers are dropped.
    static func dechunk(_ s: String) -> String {
        var out = Substring()
        var rest = Substring(s)
        while let lineEnd = rest.range(of: "\r\n") {
            let sizeField = rest[..<lineEnd.lowerBound].split(separator: ";").first ?? ""
            guard let size = Int(sizeField.trimmingCharacters(in: .whitespaces), radix: 16), size > 0 else { break }
            let start = lineEnd.upperBound
            guard let end = rest.utf8.index(start, offsetBy: size, limitedBy: rest.utf8.endIndex) else { out += rest[start...]; break }
            out += rest[start..<end]
            rest = rest[end...].dropFirst(2)
        }
        return String(out)
    }
}
