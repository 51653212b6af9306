/// The one error type of the control plane: a readable message plus a kind that
/// callers (and tests) can match on. Messages name the offending input.
public struct DesaError: Error, CustomStringConvertible, Equatable, Sendable {
    public enum Kind: String, Sendable {
        case invalidInput
        case notFound
        case conflict
        case config
        case system
        case checkFailed
    }

    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }

    static func invalid(_ message: String) -> DesaError { DesaError(.invalidInput, message) }
    static func system(_ message: String) -> DesaError { DesaError(.system, message) }
}

/// How desactl and desa-agent end, the same for both: one mapping from an outcome or an
/// error to an exit status.
public enum ExitStatus {
    /// Done; for the agent's `--once`, converged.
    public static let ok: Int32 = 0
    /// A tenant failed, a service is down, or a server-wide error stopped the command.
    public static let failed: Int32 = 1
    /// The input was refused (a bad name, a broken CSV row); nothing was changed.
    public static let refused: Int32 = 2
    /// `desa-agent --once`: the server drifted from the state database.
    public static let drifted: Int32 = 3

    /// The status an error ends a command with, whatever its type.
    public static func of(_ error: Error) -> Int32 {
        (error as? DesaError)?.kind == .invalidInput ? refused : failed
    }
}
