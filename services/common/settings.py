"""One place for configuration: every setting is read from the environment with the `AK_` prefix."""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_JWT_SECRET = "acikkapi-dev-secret-change-me-in-production"
# The local stand-in for the e-Devlet gateway's key (services/common/devkeys/README.txt).
DEV_EDEVLET_PUBLIC_KEY = files("services.common").joinpath("devkeys/edevlet_dev_public.pem")
DEV_PII_KEY = "acikkapi-dev-pii-key-change-me-in-production"
# Local Kafka passwords are derived from this (services/common/kafka_auth.py), so `make run`
# needs no setup. Like the two above it must never reach production: issue 11 refuses it there.
DEV_KAFKA_SECRET = "acikkapi-dev-kafka-secret-change-me-in-production"

SERVICE_PORTS = {
    "intake": 8001,
    "routing": 8002,
    "tracking": 8003,
    "notification": 8004,
    "reporting": 8005,
}


class Settings(BaseSettings):
    """Settings shared by every service; a service reads only what it needs."""

    model_config = SettingsConfigDict(env_prefix="AK_", extra="ignore")

    kafka_bootstrap: str = "127.0.0.1:9092"
    # Every Kafka client authenticates (services/common/kafka_auth.py): SASL/SCRAM, one user per
    # service. `kafka_username` empty: the process's own user (the service's name; tools:
    # admin). `kafka_password` empty: derived from `kafka_dev_secret`, for local use only.
    kafka_security_protocol: Literal["SASL_PLAINTEXT", "SASL_SSL", "PLAINTEXT"] = "SASL_PLAINTEXT"
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256"] = "SCRAM-SHA-512"
    kafka_username: str = ""
    kafka_password: str = ""
    kafka_dev_secret: str = DEV_KAFKA_SECRET
    # SASL_SSL: the CA that signed the brokers' certificates (empty: the system's CAs).
    kafka_ssl_cafile: str = ""
    mongo_uri: str = "mongodb://127.0.0.1:27017"
    # A service's own MongoDB, when it has one (e.g. AK_TRACKING_MONGO_URI); else `mongo_uri`.
    intake_mongo_uri: str = ""
    routing_mongo_uri: str = ""
    tracking_mongo_uri: str = ""
    notification_mongo_uri: str = ""
    reporting_mongo_uri: str = ""
    # Each service owns one database: f"{db_prefix}_{service}".
    db_prefix: str = "acikkapi"
    jwt_secret: str = DEV_JWT_SECRET
    jwt_issuer: str = "acikkapi"
    pii_key: str = DEV_PII_KEY
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 2525
    smtp_sender: str = "Açık Kapı <acikkapi@denizli.gov.tr>"
    sms_gateway_url: str = "http://127.0.0.1:13013/cgi-bin/sendsms"
    sms_username: str = "acikkapi"
    sms_password: str = "acikkapi"
    sms_sender: str = "ACIKKAPI"
    # Where Kannel calls back with delivery reports; the notification service's own address.
    sms_dlr_base_url: str = "http://127.0.0.1:8004"
    # The notification service as citizens reach it: e-mails' unsubscribe links point here.
    notification_public_url: str = "http://127.0.0.1:8004"
    # Messages a second per provider, per notification process: a token bucket shared by the
    # process's sends. Divide the provider's own limit by the number of processes. 0: none.
    sms_rate_per_second: float = Field(default=200.0, ge=0)
    smtp_rate_per_second: float = Field(default=100.0, ge=0)
    # Non-urgent SMS asked for in these hours (Europe/Istanbul, "HH:MM-HH:MM") are held until
    # they end; one-time codes never are. Empty: no quiet hours.
    sms_quiet_hours: str = Field(
        default="21:00-08:30", pattern=r"^$|^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$"
    )
    # A gateway that is away is tried again after 1 s, doubling up to the cap (with jitter);
    # after this many attempts or this long the message fails and is dead-lettered.
    notification_retry_first_seconds: float = Field(default=1.0, gt=0)
    notification_retry_cap_seconds: float = Field(default=300.0, gt=0)
    notification_retry_max_attempts: int = Field(default=20, ge=1)
    notification_retry_max_seconds: float = Field(default=3600.0, gt=0)
    # The consumer group of notification's requests; empty: acikkapi-notification. (A second
    # deployment beside the first, e.g. a test's, takes a group of its own.)
    notification_consumer_group: str = ""

    host: str = "127.0.0.1"
    # 0 means "the service's default port" (SERVICE_PORTS).
    port: int = 0
    # Processes that share the service's port (uvicorn workers).
    workers: int = Field(default=1, ge=1, le=32)
    intake_port: int = SERVICE_PORTS["intake"]
    routing_port: int = SERVICE_PORTS["routing"]
    tracking_port: int = SERVICE_PORTS["tracking"]
    notification_port: int = SERVICE_PORTS["notification"]
    reporting_port: int = SERVICE_PORTS["reporting"]

    # The e-Devlet gateway's identity assertions: its RS256 public key (PEM), issuer, audience.
    edevlet_public_key: str = Field(default_factory=lambda: DEV_EDEVLET_PUBLIC_KEY.read_text())
    edevlet_issuer: str = "https://giris.turkiye.gov.tr"
    edevlet_audience: str = "acikkapi"
    # Who the citizen says they are, checked against the population registry (services/intake/
    # identity.py): "registry_file" (a demo registry, the local default), "kps" (the registry's
    # service at identity_service_url), or "off".
    identity_verifier: str = "registry_file"
    identity_registry_file: str = ""  # empty: the demo registry bundled with intake
    identity_service_url: str = ""
    identity_service_token: str = ""
    # The web and mobile channels confirm the mobile number with a code sent by SMS first.
    phone_verification: bool = True
    # Limits on the citizens' own channels (services/intake/limits.py; docs/limits.md says why
    # these values). 0 turns a limit off.
    daily_limit_per_tckn: int = Field(default=5, ge=0)
    daily_limit_per_phone: int = Field(default=10, ge=0)
    client_posts_per_minute: int = Field(default=60, ge=0)
    client_burst: int = Field(default=30, ge=1)
    # Reverse proxies whose X-Forwarded-For is believed (comma-separated addresses).
    trusted_proxies: str = ""
    # A folder of further taxonomy_<province>.json files for routing (a province added as data).
    taxonomy_dir: str = ""
    # Routing routes an application without a category at once when its learned model is at
    # least this sure of the institution (bench/routing_eval.py shows the share and precision
    # per threshold); below it the application waits for an officer. 1 turns it off.
    auto_route_threshold: float = Field(default=0.95, ge=0.0, le=1.0)

    # Public address of the citizens' status page, printed in SMS texts.
    public_tracking_url: str = "http://127.0.0.1:8003/takip"
    # Answers that wait for an Açık Kapı supervisor's approval before they reach the citizen:
    # those of these institutions (comma-separated codes) and of these application types
    # (e.g. "sikayet,ihbar"). Empty: every answer goes straight to the citizen.
    answer_approval_institutions: str = ""
    answer_approval_types: str = ""
    # Service levels (docs/deadlines.md): the business days an institution has to answer, by
    # default, per application type (JSON, e.g. {"bilgi_edinme": 15}: Law 4982) and per
    # category code (JSON, e.g. {"ALT-001": 10}; a category's level wins over its type's).
    answer_business_days: int = Field(default=7, ge=1, le=60)
    answer_business_days_by_type: dict[str, int] = Field(
        default_factory=lambda: {"bilgi_edinme": 15}
    )
    answer_business_days_by_category: dict[str, int] = Field(default_factory=dict)
    # The institution is warned by e-mail this many business days before its deadline.
    deadline_warning_business_days: int = Field(default=2, ge=1, le=10)
    # Who is told of a missed deadline: the governorship's Açık Kapı supervisors. Empty: the
    # address the taxonomy gives the province's VALILIK institution.
    supervisor_email: str = ""
    # When each institution's morning e-mail (its open and overdue applications) goes out,
    # Istanbul time, on business days.
    digest_time: str = Field(default="08:30", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    default_province_code: int = 20
    # How often reporting's fold loop looks for changed days of receipt to fold into cells.
    report_fold_interval_seconds: float = Field(default=1.0, gt=0, le=60)
    # How often the process holding reporting's fold lease looks for chronic problems.
    chronic_interval_minutes: float = Field(default=60.0, gt=0)
    # Mark the dashboards' session cookie Secure (sent over HTTPS only): true behind TLS.
    session_cookie_secure: bool = False
    # Production mode lets Kafka be SASL_PLAINTEXT (authenticated, not encrypted) only when this
    # says the brokers sit on one host's private network (deploy/compose.yaml); else SASL_SSL.
    kafka_private_network: bool = False
    # Open311 GeoReport v2 clients allowed to post requests: "client_name:key,client2:key2".
    open311_api_keys: str = ""
    # How many times a consumer retries a failing message before it goes to the dead-letter topic.
    consumer_max_attempts: int = 3
    # Largest HTTP body any service accepts.
    max_body_bytes: int = Field(default=1_048_576)
    # Largest file intake takes as an attachment, and how many one application may carry.
    attachment_max_bytes: int = Field(default=5 * 1_048_576, ge=1)
    attachments_per_application: int = Field(default=5, ge=1)
    log_level: str = "INFO"
    # Issue 11: production mode takes only the identity provider's tokens and refuses to start
    # with a development secret or key (services/common/production.py lists what it checks).
    environment: Literal["development", "production"] = "development"
    # Staff sign in at an OpenID Connect provider (services/common/auth.py): its issuer, this
    # system's audience (client id), its JWKS address, and how long fetched keys are kept.
    oidc_issuer: str = ""
    oidc_audience: str = ""
    oidc_jwks_url: str = ""
    oidc_jwks_lifespan_seconds: float = Field(default=300.0, gt=0)
    oidc_jwks_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    # The provider's claims: the role (a dotted path such as "realm_access.roles" reads a list;
    # without "role", Keycloak's list is read), the user, institution, sub-unit, province, district.
    oidc_role_claim: str = "role"
    oidc_subject_claim: str = "sub"
    oidc_institution_claim: str = "inst"
    oidc_unit_claim: str = "unit"
    oidc_province_claim: str = "prov"
    oidc_district_claim: str = "dist"
    # Signs the SMS delivery reports' callback addresses; empty: derived from `jwt_secret`
    # (development only: production mode refuses to start without one of its own).
    sms_dlr_secret: str = ""
    # PII key rotation (services/common/pii.py): former `pii_key`s, comma-separated, that only
    # decrypt; and the blind indexes' own key (empty: derived from `pii_key`, as before).
    pii_old_keys: str = ""
    pii_index_key: str = ""
    # Days after receipt when an application's personal data is anonymised in every service
    # (services/common/retention.py). 730: the answer is due within 15 business days, the
    # 60-day window to sue over it and any re-application referring to it close well within
    # two years; the facts stay for statistics. 0 turns the job off.
    personal_data_retention_days: int = Field(default=730, ge=0)

    @property
    def production(self) -> bool:
        return self.environment == "production"

    def port_for(self, service: str) -> int:
        if self.port:
            return self.port
        return int(getattr(self, f"{service}_port"))

    def mongo_uri_for(self, service: str) -> str:
        return str(getattr(self, f"{service}_mongo_uri", "")) or self.mongo_uri

    def database_name(self, service: str) -> str:
        return f"{self.db_prefix}_{service}"

    def pii_key_bytes(self) -> bytes:
        """A 32-byte AES key: the setting as base64 if it decodes to 32 bytes, else its SHA-256."""
        from services.common.pii import key_bytes

        return key_bytes(self.pii_key)


@lru_cache
def get_settings() -> Settings:
    return Settings()
