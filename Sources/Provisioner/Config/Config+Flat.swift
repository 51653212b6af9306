// The flat names Config had before its sections; call sites move to the sections
// (`config.nginx.sitesDir`) over time, then this file goes.

extension Config {
    public typealias PHPVersion = PHPSettings.Version

    public var regencyCode: String { get { regency.code } set { regency.code = newValue } }
    public var domain: String { get { regency.domain } set { regency.domain = newValue } }

    public var stateDir: String { get { paths.stateDir } set { paths.stateDir = newValue } }
    public var webRoot: String { get { paths.webRoot } set { paths.webRoot = newValue } }
    public var archiveDir: String { get { paths.archiveDir } set { paths.archiveDir = newValue } }
    public var acmeRoot: String { get { paths.acmeRoot } set { paths.acmeRoot = newValue } }
    public var logDir: String { get { paths.logDir } set { paths.logDir = newValue } }
    public var templates: String { get { paths.templates } set { paths.templates = newValue } }
    public var operatorTemplates: String? { get { paths.operatorTemplates } set { paths.operatorTemplates = newValue } }

    public var userPrefix: String { get { users.prefix } set { users.prefix = newValue } }
    public var uidMin: Int { get { users.uidMin } set { users.uidMin = newValue } }
    public var uidMax: Int { get { users.uidMax } set { users.uidMax = newValue } }
    public var webGroup: String { get { users.webGroup } set { users.webGroup = newValue } }
    public var sysusersFile: String { get { users.sysusersFile } set { users.sysusersFile = newValue } }
    public var passwdFile: String { get { users.passwdFile } set { users.passwdFile = newValue } }

    public var nginxBinary: String { get { nginx.binary } set { nginx.binary = newValue } }
    public var nginxMainConf: String { get { nginx.mainConf } set { nginx.mainConf = newValue } }
    public var nginxPrefix: String? { get { nginx.prefix } set { nginx.prefix = newValue } }
    public var nginxSitesDir: String { get { nginx.sitesDir } set { nginx.sitesDir = newValue } }
    public var nginxPidFile: String { get { nginx.pidFile } set { nginx.pidFile = newValue } }
    public var nginxListen: String { get { nginx.listen } set { nginx.listen = newValue } }
    public var probeAddress: String { get { nginx.probe } set { nginx.probe = newValue } }
    public var fastcgiParams: String { get { nginx.fastcgiParams } set { nginx.fastcgiParams = newValue } }
    public var nginxService: String { get { nginx.service } set { nginx.service = newValue } }
    public var nginxErrorLog: String { get { nginx.errorLogFile } set { nginx.errorLogFile = newValue } }
    /// `"tenant"` or `"shared"` (`nginx.tenantErrorLogs` is the enum).
    public var tenantErrorLogs: String {
        get { nginx.tenantErrorLogs.rawValue }
        set {
            guard let v = NginxSettings.TenantErrorLogs(rawValue: newValue) else {
                preconditionFailure("tenantErrorLogs must be tenant or shared, not \(newValue)")
            }
            nginx.tenantErrorLogs = v
        }
    }
    public var serverNamesHashBucketSize: Int {
        get { nginx.serverNamesHashBucketSize }
        set { nginx.serverNamesHashBucketSize = newValue }
    }
    public var maxServerNameLength: Int { nginx.maxServerNameLength }

    public var defaultPHP: String { get { phpSettings.default } set { phpSettings.default = newValue } }
    public var php: [String: PHPVersion] { get { phpSettings.versions } set { phpSettings.versions = newValue } }
    public func phpVersion(_ v: String) throws -> PHPVersion { try phpSettings.version(v) }
}
