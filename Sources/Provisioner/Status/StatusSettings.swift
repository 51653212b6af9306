import Foundation

/// `[status]`: the operators' status page, served by desa-agent. Off unless `listen` is
/// set; like the metrics it names every village, so it listens only on the loopback
/// interface or a Unix socket, optionally behind HTTP basic auth.
public struct StatusSettings: ConfigSection {
    public static let name = "status"

    @Setting("listen", "desa-agent's status page: \"127.0.0.1:9465\", \"[::1]:9465\" or \"unix:/run/desa/status.sock\" (0660 root); loopback only; \"\": off")
    public var listen = ""
    @Setting("auth_file", "HTTP basic auth for the status page: a file of user:password lines, root's and 0600 (read at each request); \"\": none", .path)
    public var authFile: String? = nil

    public init() {}
    public init(from decoder: Decoder) throws { try self.init(settingsFrom: decoder) }
    public func encode(to encoder: Encoder) throws { try encodeSettings(to: encoder) }

    static let why = "the status page names every village"

    public func validate(in config: Config) throws {
        let a = try MetricsListen.parse(listen, key: "status.listen", why: Self.why)
        if case .tcp(_, let port) = a, port == 0 {
            throw DesaError(.config, "status.listen \(Quote.show(listen)) needs a port from 1 to 65535")
        }
        if let m = config.metrics.address, let a, m == a {
            throw DesaError(.config, "status.listen \(listen) is metrics.listen too; give each its own")
        }
    }
}

extension Config {
    public var status: StatusSettings { section(StatusSettings.self) }
}
