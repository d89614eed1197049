"""A deterministic generator of realistic Turkish complaints over the 32 reference categories.

It exists so the demo, the tests and the benchmarks need no downloaded data. The
categories deliberately share vocabulary (service, refund, delivery, warranty …),
texts borrow words from neighbouring categories, and a few percent carry the
label a hurried user would have picked, so a model cannot reach 100%.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# category → (products/things, category-specific problems)
_CATEGORIES: dict[str, tuple[list[str], list[str]]] = {
    "Alışveriş": (["sipariş", "sepet", "indirim kuponu", "kampanya", "ürün", "mağaza"],
                  ["sipariş iptal edildi", "kupon sepette geçmedi", "yanlış ürün gönderildi", "satıcı cevap vermiyor"]),
    "Anne-Bebek": (["bebek bezi", "mama", "biberon", "bebek arabası", "emzik", "oto koltuğu"],
                   ["bez pişik yaptı", "mama paketi açık geldi", "araba tekerleği kırıldı", "biberon sızdırıyor"]),
    "Beyaz-Eşya": (["buzdolabı", "çamaşır makinesi", "bulaşık makinesi", "fırın", "derin dondurucu", "kurutma makinesi"],
                   ["soğutmuyor", "su akıtıyor", "servis gelmedi", "motor arızası verdi", "kapak contası yırtıldı"]),
    "Bilgisayar": (["dizüstü bilgisayar", "laptop", "ekran kartı", "klavye", "anakart", "SSD"],
                   ["mavi ekran veriyor", "şarj almıyor", "fan çok ses yapıyor", "ekran kartı yandı"]),
    "Cep Telefon Kategori": (["telefon", "akıllı telefon", "ekran", "batarya", "şarj aleti", "kulaklık"],
                             ["ekran dokunmatiği çalışmıyor", "batarya şişti", "kamera bulanık çekiyor", "telefon kendi kendine kapanıyor"]),
    "Eğitim": (["kurs", "dershane", "online eğitim", "sertifika", "okul", "üniversite"],
               ["ders saatleri iptal edildi", "sertifika verilmedi", "öğretmen derse gelmedi", "kayıt ücreti iade edilmedi"]),
    "Elektronik": (["televizyon", "kulaklık", "hoparlör", "oyun konsolu", "akıllı saat", "kamera"],
                   ["görüntü gitti", "ses gelmiyor", "kumanda çalışmıyor", "garanti kapsamında değil dediler"]),
    "Emlak ve İnşaat": (["daire", "konut projesi", "site yönetimi", "tapu", "kira", "müteahhit"],
                        ["teslim tarihi geçti", "duvarlarda çatlak var", "aidat çok yüksek", "tapu verilmedi"]),
    "Enerji": (["elektrik faturası", "doğalgaz", "sayaç", "elektrik", "kombi", "enerji şirketi"],
               ["fatura çok yüksek geldi", "elektrik kesintisi", "sayaç okunmadı", "doğalgaz açılmadı"]),
    "Etkinlik ve Organizasyon": (["konser bileti", "festival", "düğün organizasyonu", "etkinlik", "bilet", "tiyatro"],
                                 ["etkinlik iptal edildi", "bilet ücreti iade edilmedi", "organizasyon rezalet", "koltuk numarası yanlış"]),
    "Finans": (["kredi kartı", "banka", "kredi", "hesap", "aidat", "havale"],
               ["kart aidatı kesildi", "hesabımdan izinsiz para çekildi", "kredi başvurusu reddedildi", "faiz yanlış hesaplandı"]),
    "Gıda": (["peynir", "süt", "ekmek", "çikolata", "yoğurt", "konserve"],
             ["son kullanma tarihi geçmiş", "içinden böcek çıktı", "küflü geldi", "ambalaj şişmiş"]),
    "Giyim": (["mont", "ayakkabı", "pantolon", "elbise", "tişört", "kazak"],
              ["beden uymadı", "ilk yıkamada çekti", "dikişi söküldü", "rengi soldu"]),
    "Hizmet Sektörü": (["kuaför", "çilingir", "tadilat", "tesisatçı", "temizlik hizmeti", "nakliye hizmeti"],
                       ["randevuya gelmedi", "işi yarım bıraktı", "fazla ücret aldı", "kaba davrandı"]),
    "İçecek": (["maden suyu", "meyve suyu", "gazlı içecek", "kahve", "çay", "damacana su"],
               ["tadı bozuk", "şişenin içinde tortu var", "kapak açıktı", "damacana geç geldi"]),
    "İnternet": (["fiber internet", "modem", "altyapı", "internet paketi", "wifi", "taahhüt"],
                 ["internet sürekli kopuyor", "hız düşük", "modem arızalı", "taahhüt bitmeden ücret istendi"]),
    "Kamu Hizmetleri": (["belediye", "nüfus müdürlüğü", "su idaresi", "vergi dairesi", "e-devlet", "hastane randevusu"],
                        ["su kesintisi", "yol çalışması bitmedi", "çöp toplanmıyor", "randevu alınamıyor"]),
    "Kargo Nakliyat": (["kargo", "gönderi", "koli", "paket", "kurye", "nakliye"],
                       ["kargo teslim edilmedi", "paket hasarlı geldi", "kurye adreste yok dedi", "gönderi kayboldu"]),
    "Kişisel Bakım ve Kozmetik": (["parfüm", "şampuan", "ruj", "krem", "fondöten", "tıraş makinesi"],
                                  ["cildimde alerji yaptı", "sahte ürün geldi", "kutusu açılmış", "kalıcılığı yok"]),
    "Küçük Ev Aletleri": (["süpürge", "kahve makinesi", "ütü", "tost makinesi", "blender", "saç kurutma makinesi"],
                          ["çalışmıyor", "fişi eridi", "motoru yandı", "servis parça yok dedi"]),
    "Medya": (["dijital platform", "dergi aboneliği", "gazete", "yayın", "film", "dizi"],
              ["abonelik iptal edilmiyor", "yayın donuyor", "ücret iki kere çekildi", "içerik kaldırıldı"]),
    "Mekan ve Eğlence": (["restoran", "kafe", "bar", "sinema", "lunapark", "oyun salonu"],
                         ["hesap fazla geldi", "garson ilgisiz", "yemekten saç çıktı", "rezervasyon yok sayıldı"]),
    "Mobilya Ev Tekstili": (["koltuk takımı", "yatak", "gardırop", "nevresim", "halı", "yemek masası"],
                            ["montaj yapılmadı", "kumaş yırtık geldi", "parçalar eksik", "teslimat ertelendi"]),
    "Mücevher Saat Gözlük": (["kol saati", "yüzük", "kolye", "gözlük", "lens", "bilezik"],
                             ["kararma yaptı", "cam çizik", "taşı düştü", "saat geri kalıyor"]),
    "Mutfak Araç Gereç": (["tencere", "tava", "bıçak seti", "çaydanlık", "düdüklü tencere", "saklama kabı"],
                          ["teflonu soyuldu", "kulpu kırıldı", "paslandı", "kapağı kapanmıyor"]),
    "Otomotiv": (["araç", "otomobil", "lastik", "yetkili servis", "yedek parça", "akü"],
                 ["motor arıza lambası yandı", "servis aracı bekletti", "parça gelmedi", "şanzıman arızası"]),
    "Sağlık": (["hastane", "doktor", "ilaç", "diş kliniği", "laboratuvar", "özel hastane"],
               ["muayene ücreti fazla alındı", "randevu iptal edildi", "yanlış teşhis", "tahlil sonucu çıkmadı"]),
    "Sigortacılık": (["kasko", "trafik sigortası", "sağlık sigortası", "poliçe", "konut sigortası", "hasar dosyası"],
                     ["hasar ödenmedi", "poliçe iptal edilmedi", "eksper gelmedi", "prim fazla çekildi"]),
    "Spor": (["spor salonu", "fitness üyeliği", "koşu ayakkabısı", "bisiklet", "spor ekipmanı", "pilates"],
             ["üyelik dondurulmadı", "antrenör gelmedi", "salon kapandı", "ekipman bozuk"]),
    "Temizlik": (["deterjan", "çamaşır suyu", "yumuşatıcı", "bulaşık deterjanı", "ıslak mendil", "yüzey temizleyici"],
                 ["kötü koku yaptı", "leke çıkarmıyor", "şişe patladı", "elimde tahriş yaptı"]),
    "Turizm": (["otel", "tatil", "tur", "rezervasyon", "pansiyon", "villa"],
               ["oda fotoğraftaki gibi değil", "rezervasyon bulunamadı", "havuz kirliydi", "tur iptal edildi"]),
    "Ulaşım": (["uçak bileti", "otobüs", "havayolu", "tren", "bagaj", "metro"],
               ["uçuş iptal edildi", "bagaj kayboldu", "otobüs geç kalktı", "rötar yaptı"]),
}

CATEGORIES: list[str] = list(_CATEGORIES)

# Words every complaint site is full of: they make categories overlap.
_GENERIC_PROBLEMS = [
    "para iadesi yapılmadı", "müşteri hizmetlerine ulaşılamıyor", "garanti kapsamında değil dediler",
    "kimse ilgilenmiyor", "teslimat gecikti", "servis gelmedi", "fatura yanlış", "iade talebim reddedildi",
]
_OPENERS = [
    "Merhaba,", "Sayın yetkililer,", "Rezalet!", "Mağdurum.", "Artık yeter.", "Bilginize,", "", "", "",
]
_CLOSERS = [
    "Sorunun bir an önce çözülmesini istiyorum.", "Paramı geri istiyorum.", "Bir daha asla almam.",
    "Tüketici hakem heyetine başvuracağım.", "Mağduriyetimin giderilmesini talep ediyorum.",
    "Lütfen yardımcı olun.", "", "",
]
_TEMPLATES = [
    "{brand} markasından {product} aldım, {problem}.",
    "{days} gündür {product} için bekliyorum, {problem}.",
    "{brand} {product} {problem}, {generic}.",
    "{product} {problem}. {brand} müşteri hizmetleri {generic_lc}.",
    "{days} gün önce {brand} üzerinden {product} siparişi verdim ama {problem}.",
    "{brand} ile yaşadığım sorun: {product} {problem}.",
    "Sipariş numaram {order}. {product} {problem}, {generic}.",
]
_SYLLABLES = ["tek", "sa", "ko", "mar", "ti", "ven", "ba", "ro", "nes", "al", "de", "ka", "pa", "zi", "lo", "mer"]
_ASCII_FOLD = str.maketrans("çğıöşüÇĞİÖŞÜ", "cgiosuCGIOSU")
_NOISE = [" :(", " !!!", " ???", " 😡", " www.ornek-site.com", " #mağdur", " ...", " @destek"]


def _brands(rng: np.random.Generator, count: int) -> list[str]:
    names = []
    for _ in range(count):
        parts = rng.choice(_SYLLABLES, size=int(rng.integers(2, 4)))
        names.append("".join(parts).capitalize())
    return names


def _typo(word: str, rng: np.random.Generator) -> str:
    if len(word) < 4:
        return word
    i = int(rng.integers(1, len(word) - 1))
    if rng.random() < 0.5:
        return word[:i] + word[i + 1 :]
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]


def _mess_up(text: str, rng: np.random.Generator) -> str:
    """Add what real users add: typos, missing Turkish letters, shouting, noise."""
    words = text.split(" ")
    for i in range(len(words)):
        if rng.random() < 0.04:
            words[i] = _typo(words[i], rng)
    text = " ".join(words)
    roll = rng.random()
    if roll < 0.12:
        text = text.translate(_ASCII_FOLD)
    elif roll < 0.18:
        text = text.replace("i", "İ").upper()  # Turkish shouting keeps its dotted İ
    if rng.random() < 0.3:
        text += str(rng.choice(_NOISE))
    return text


def _complaint(category: str, brands: list[str], rng: np.random.Generator) -> str:
    products = _CATEGORIES[category][0]
    sentences = [str(rng.choice(_OPENERS))]
    for _ in range(int(rng.integers(1, 5))):
        # A share of sentences borrow a neighbour's vocabulary: the realistic overlap.
        source = category if rng.random() > 0.22 else str(rng.choice(CATEGORIES))
        src_products, src_problems = _CATEGORIES[source]
        generic = str(rng.choice(_GENERIC_PROBLEMS))
        sentences.append(
            str(rng.choice(_TEMPLATES)).format(
                brand=str(rng.choice(brands)),
                product=str(rng.choice(src_products if source != category else products)),
                problem=str(rng.choice(src_problems + _GENERIC_PROBLEMS[:2])),
                generic=generic,
                generic_lc=generic,
                days=int(rng.integers(2, 60)),
                order=int(rng.integers(10_000_000, 99_999_999)),
            )
        )
    sentences.append(str(rng.choice(_CLOSERS)))
    text = " ".join(s for s in sentences if s)
    return _mess_up(text[0].upper() + text[1:], rng)


def generate(rows: int, seed: int = 0, labelled: bool = True, label_noise: float = 0.03) -> pd.DataFrame:
    """`rows` complaints as a DataFrame with `id`, `text` and (if labelled) `category`.

    The same `rows` and `seed` always give the same frame.
    """
    rng = np.random.default_rng(seed)
    brand_rng = np.random.default_rng(10_007)  # brands stay the same whatever the seed
    brands = {c: _brands(brand_rng, 4) for c in CATEGORIES}
    # Real archives are imbalanced: category weights from a fixed Zipf-like curve.
    weights = 1.0 / np.arange(1, len(CATEGORIES) + 1) ** 0.6
    weights = weights / weights.sum()
    categories = rng.choice(len(CATEGORIES), size=rows, p=weights)
    texts = []
    labels = []
    for index in categories:
        category = CATEGORIES[int(index)]
        texts.append(_complaint(category, brands[category], rng))
        if rng.random() < label_noise:
            category = CATEGORIES[int(rng.integers(len(CATEGORIES)))]
        labels.append(category)
    frame = pd.DataFrame({"id": [f"sample-{seed}-{i:07d}" for i in range(rows)], "text": texts})
    if labelled:
        frame["category"] = labels
    return frame
