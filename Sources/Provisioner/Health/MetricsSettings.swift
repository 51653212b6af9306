import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `[metrics]`: the agent's Prometheus endpoint (`GET /metrics`). Off unless `listen` is
/// set. The metrics name every village, so they are served only on the loopback
/// interface or on a Unix socket (0660 root), never on a public address.
public struct MetricsSettings: ConfigSection {
    public static let name = "metrics"

    @Setting("listen", "desa-agent's Prometheus /metrics: \"127.0.0.1:9464\", \"[::1]:9464\" or \"unix:/run/desa/metrics.sock\" (0660 root); loopback only, the series name every village; \"\": off")
    public var listen = ""

    public init() {}

    /// The parsed `listen`, or nil when metrics are off.
    public var address: MetricsListen? { try? MetricsListen.parse(listen) }

    public init(from decoder: Decoder) throws { try self.init(settingsFrom: decoder) }
    public func encode(to encoder: Encoder) throws { try encodeSettings(to: encoder) }

    public func validate(in config: Config) throws {
        let a = try MetricsListen.parse(listen, key: "metrics.listen")
        if case .tcp(_, let port) = a, port == 0 {
            throw DesaError(.config, "metrics.listen \(Quote.show(listen)) needs a port from 1 to 65535, where Prometheus can find it")
        }
    }
}

extension Config {
    public var metrics: MetricsSettings { section(MetricsSettings.self) }
}

/// Where the metrics endpoint listens: a loopback TCP address or a Unix socket.
public enum MetricsListen: Sendable, Equatable, CustomStringConvertible {
    /// A loopback IP literal (`127.0.0.1`, `::1`) and a port (0: any free one, for tests).
    case tcp(host: String, port: Int)
    /// An absolute path for a Unix socket.
    case unix(path: String)

    public var description: String {
        switch self {
        case .tcp(let host, let port): host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        case .unix(let path): "unix:\(path)"
        }
    }

    /// Parses `listen`; nil when it is empty (metrics off). Throws `DesaError(.config)` naming
    /// `key` for anything else than a loopback `HOST:PORT` or `unix:/ABSOLUTE/PATH`.
    public static func parse(_ listen: String, key: String = "metrics.listen", why: String = metricsWhy) throws -> MetricsListen? {
        if listen.isEmpty { return nil }
        let shown = Quote.show(listen)
        let forms = "use 127.0.0.1:PORT, [::1]:PORT or unix:/PATH"
        if listen.hasPrefix("unix:") {
            let path = String(listen.dropFirst(5))
            guard PathGrammar.isSafeAbsolute(path), !path.hasSuffix("/") else {
                throw DesaError(.config, "\(key) \(shown): the socket path must be absolute and contain only letters, digits and / . _ - +")
            }
            // sockaddr_un.sun_path: 108 bytes with the terminating NUL.
            guard path.utf8.count <= 107 else {
                throw DesaError(.config, "\(key) \(shown): a Unix socket path may have at most 107 bytes")
            }
            return .unix(path: path)
        }
        let host: Substring, portText: Substring
        if listen.hasPrefix("[") {
            guard let close = listen.firstIndex(of: "]"), listen[listen.index(after: close)...].hasPrefix(":") else {
                throw DesaError(.config, "\(key) \(shown) is not an address and port; \(forms)")
            }
            host = listen[listen.index(after: listen.startIndex)..<close]
            portText = listen[listen.index(close, offsetBy: 2)...]
        } else {
            guard let colon = listen.lastIndex(of: ":"), !listen[..<colon].contains(":") else {
                throw DesaError(.config, "\(key) \(shown) is not an address and port; \(forms)")
            }
            host = listen[..<colon]
            portText = listen[listen.index(after: colon)...]
        }
        guard !portText.isEmpty, portText.allSatisfy(\.isASCII), portText.allSatisfy(\.isNumber),
              portText.count <= 5, let port = Int(portText), port <= 65535 else {
            throw DesaError(.config, "\(key) \(shown): the port must be a number from 1 to 65535")
        }
        guard let loopback = isLoopback(String(host)) else {
            throw DesaError(.config, "\(key) \(shown): \(Quote.show(String(host))) is not an IP address; \(forms)")
        }
        guard loopback else {
            throw DesaError(.config, "\(key) \(shown) is not a loopback address: \(why) and must not be published; \(forms)")
        }
        return .tcp(host: String(host), port: port)
    }

    public static let metricsWhy = "the metrics name every village"

    /// Whether an IP literal is a loopback address (127.0.0.0/8, ::1); nil if it is no IP literal.
    static func isLoopback(_ host: String) -> Bool? {
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 {
            return UInt32(bigEndian: v4.s_addr) >> 24 == 127
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, host, &v6) == 1 {
            let bytes = withUnsafeBytes(of: v6) { Array($0) }
            return bytes == [UInt8](repeating: 0, count: 15) + [1]
        }
        return nil
    }
}
