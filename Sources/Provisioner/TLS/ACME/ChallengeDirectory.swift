import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// http-01 through files: `<path>/<token>` holds the key authorization (mode 0644, written
/// atomically); the web server serves `/.well-known/acme-challenge/` from `path`.
public struct ChallengeDirectory: HTTP01Responder {
    public let path: String

    public init(path: String) {
        self.path = path
    }

    public func present(token: String, keyAuthorization: String) throws {
        try Self.checkToken(token)
        var st = stat()
        if stat(path, &st) != 0 {
            guard mkdir(path, 0o755) == 0 || errno == EEXIST else {
                throw DesaError.system("cannot create the challenge directory \(path): \(errnoText())")
            }
        } else if st.st_mode & S_IFMT != S_IFDIR {
            throw DesaError.system("the challenge directory \(path) is not a directory")
        }
        try AtomicFiles.write([FileWrite(path: file(token), content: keyAuthorization, mode: 0o644)])
    }

    public func cleanUp(token: String) {
        guard (try? Self.checkToken(token)) != nil else { return }
        AtomicFiles.remove([file(token)])
    }

    private func file(_ token: String) -> String { path + "/" + token }

    /// A token comes from the CA: base64url only, so it cannot name another path.
    static func checkToken(_ token: String) throws {
        guard !token.isEmpty, token.utf8.count <= 256,
              token.utf8.allSatisfy({ Base64URL.alphabet.contains($0) }) else {
            throw DesaError.invalid("the CA sent an http-01 token that is not base64url: \(Quote.show(token))")
        }
    }
}
