"""What people read for each value the API takes: one Turkish label per application type,
channel and priority mark, for every page, receipt, report and Open311 list."""

from __future__ import annotations

from services.common.events import ApplicationType, Channel, Priority

TYPE_LABELS: dict[ApplicationType, str] = {
    ApplicationType.istek: "İstek",
    ApplicationType.sikayet: "Şikâyet",
    ApplicationType.oneri: "Öneri",
    ApplicationType.bilgi_edinme: "Bilgi edinme",
    ApplicationType.ihbar: "İhbar",
    ApplicationType.tesekkur: "Teşekkür",
}
CHANNEL_LABELS: dict[Channel, str] = {
    Channel.web: "Web",
    Channel.mobile: "Mobil uygulama",
    Channel.counter: "Açık Kapı masası",
    Channel.edevlet: "e-Devlet",
    Channel.kiosk: "Kiosk",
    Channel.call_center: "Çağrı merkezi",
    Channel.open311: "Open311",
}
PRIORITY_LABELS: dict[Priority, str] = {
    Priority.sehit_yakini: "Şehit yakını",
    Priority.gazi: "Gazi",
    Priority.engelli: "Engelli",
    Priority.yasli: "Yaşlı",
}
