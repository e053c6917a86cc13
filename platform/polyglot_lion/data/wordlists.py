"""Real, common words of the four languages, for the synthetic corpus (espeak-ng speaks them).

Mandarin entries are (characters, pinyin with tone numbers): the transcript is in characters, and the
``cmn-latn-pinyin`` voice is given the pinyin, since espeak-ng 1.51's ``cmn`` voice spells most characters
out as English-sounding pinyin. Tamil is in Tamil script.
"""

ENGLISH = (
    "time people year way day man thing woman life child world school family student country problem "
    "hand week company system water room mother area money story month book night home city market food "
    "rain train music morning river garden friend go make take see come know think look want give use "
    "find tell ask work call try need feel leave good new first long great little old right big high small "
    "large next early young important happy green quiet"
).split()

MALAY = (
    "saya kamu dia kami mereka rumah sekolah makan minum pergi datang buku air nasi kereta jalan kota pasar "
    "hari malam pagi petang besar kecil baru lama cantik baik buruk panas sejuk hujan matahari bulan bintang "
    "laut pantai gunung sungai pokok bunga kucing anjing burung ikan ayam kawan keluarga ibu bapa anak guru "
    "pelajar kerja main tidur baca tulis beli jual lihat dengar cakap suka mahu boleh sudah belum sangat juga "
    "dengan untuk dari ke di dan tetapi hijau merah biru"
).split()

TAMIL = (
    "வணக்கம் நன்றி அம்மா அப்பா வீடு பள்ளி தண்ணீர் சாப்பாடு புத்தகம் நகரம் கடல் மழை சூரியன் நிலா மரம் பூ "
    "பூனை நாய் பறவை மீன் நண்பன் குடும்பம் ஆசிரியர் மாணவன் வேலை காலை மாலை இரவு நாள் வாரம் மாதம் ஆண்டு "
    "பெரிய சிறிய புதிய பழைய நல்ல அழகான வேகமாக மெதுவாக போ வா சாப்பிடு குடி படி எழுது பார் கேள் பேசு "
    "தூங்கு நான் நீ அவன் அவள் நாங்கள் அவர்கள் இங்கே அங்கே இன்று நாளை நேற்று சந்தை பேருந்து ரயில் சாலை "
    "ஆறு மலை பச்சை சிவப்பு நீலம் பணம் கடை கோயில் இசை பாடல் மகிழ்ச்சி"
).split()

MANDARIN = [
    ("我", "wo3"), ("你", "ni3"), ("他", "ta1"), ("我们", "wo3 men5"), ("今天", "jin1 tian1"),
    ("明天", "ming2 tian1"), ("昨天", "zuo2 tian1"), ("早上", "zao3 shang5"), ("晚上", "wan3 shang5"),
    ("学校", "xue2 xiao4"), ("老师", "lao3 shi1"), ("学生", "xue2 sheng1"), ("朋友", "peng2 you3"),
    ("家", "jia1"), ("妈妈", "ma1 ma5"), ("爸爸", "ba4 ba5"), ("吃饭", "chi1 fan4"), ("喝水", "he1 shui3"),
    ("看书", "kan4 shu1"), ("写字", "xie3 zi4"), ("睡觉", "shui4 jiao4"), ("工作", "gong1 zuo4"),
    ("喜欢", "xi3 huan1"), ("想", "xiang3"), ("去", "qu4"), ("来", "lai2"), ("买", "mai3"), ("卖", "mai4"),
    ("说话", "shuo1 hua4"), ("听", "ting1"), ("很", "hen3"), ("非常", "fei1 chang2"), ("大", "da4"),
    ("小", "xiao3"), ("好", "hao3"), ("新", "xin1"), ("老", "lao3"), ("高", "gao1"), ("快", "kuai4"),
    ("慢", "man4"), ("城市", "cheng2 shi4"), ("公园", "gong1 yuan2"), ("市场", "shi4 chang3"),
    ("医院", "yi1 yuan4"), ("火车", "huo3 che1"), ("汽车", "qi4 che1"), ("飞机", "fei1 ji1"),
    ("天气", "tian1 qi4"), ("下雨", "xia4 yu3"), ("太阳", "tai4 yang2"), ("月亮", "yue4 liang4"),
    ("花", "hua1"), ("树", "shu4"), ("猫", "mao1"), ("狗", "gou3"), ("鱼", "yu2"), ("鸟", "niao3"),
    ("水果", "shui3 guo3"), ("苹果", "ping2 guo3"), ("米饭", "mi3 fan4"), ("茶", "cha2"), ("咖啡", "ka1 fei1"),
    ("音乐", "yin1 yue4"), ("电影", "dian4 ying3"), ("中国", "zhong1 guo2"), ("新加坡", "xin1 jia1 po1"),
    ("马来西亚", "ma3 lai2 xi1 ya4"), ("一", "yi1"), ("二", "er4"), ("三", "san1"), ("红色", "hong2 se4"),
    ("白色", "bai2 se4"), ("蓝色", "lan2 se4"), ("开心", "kai1 xin1"), ("时间", "shi2 jian1"),
]
