"""A deterministic product catalogue in the shape of WebShop's 1,000-product subset.

The original catalogue (scraped Amazon pages, `items_shuffle_1000.json`) and its human instructions
(`items_human_ins.json`) are downloaded from Google Drive by WebShop's setup script and cannot be fetched here, so
the kit generates its own: pure Python, seeded, in memory (~0.2 s), memoised per process by `world.py`.

Every product comes out in the form the original's `load_products` gives its products after loading (keys `asin`,
`name`/`Title`, `Description`, `BulletPoints`, `pricing` + `Price`, `options`, `Attributes`, `category`, `query`,
`product_category`, `Reviews`, `Rating`), plus `instructions`: human-like goal sentences with their
`instruction_attributes` and `instruction_options`, the record layout of `items_human_ins.json`. Everything
downstream (goals, search, pages, reward) therefore runs unchanged on the original data (see original.py).

How a product is made: the five WebShop categories each have ~13 product types (a noun, a category path
"A › B › C", the Amazon search query it was "scraped" under, flavours/variants, option groups and an attribute
pool); a product draws a brand, a variant, 2-5 attributes and 0-2 option groups with 2-6 values, a price or price
range, and gets a title, description and bullet points written from those. Products of one type share the query
and differ in attributes and options, so a wrong pick from the right shelf earns partial reward, as in WebShop.

Attribute notation in the tables: a plain attribute reads before the noun ("sulfate free shampoo"); "@x" reads
"for x" and "+x" reads "with x" after it. The marker is not part of the attribute.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

SEED = 2022  # the catalogue is a pure function of this seed
NUM_PRODUCTS = 1000  # AgentGym runs WebShop with num_products=1000
# 1,728 human-like instructions x 4 price caps = 6,912 goals (AgentGym's WebShop ids go up to 6,909)
NUM_INSTRUCTIONS = 1728
CATEGORIES = ("beauty", "food", "fashion", "furniture", "electronics")


@dataclass(frozen=True)
class ProductType:
    category: str
    noun: str  # as it reads in a title, e.g. "Eau de Parfum Spray for Women"
    query: str
    path: str  # product_category, levels joined by " › "
    variants: tuple[str, ...]  # what makes two products of a type differ by name (flavour line, model, finish)
    options: tuple[str, ...]  # keys of OPTION_POOLS
    attributes: tuple[str, ...]  # with the @/+ reading markers
    price: tuple[float, float]

    @property
    def plural(self) -> bool:  # "Protein Bars", "Dining Chairs" (but "Women's Casual Dress")
        return self.noun.endswith("s") and not self.noun.endswith("ss")


# option group key -> (the option name shown on the item page, its values in display order)
OPTION_POOLS: dict[str, tuple[str, tuple[str, ...]]] = {
    "color": ("color", ("black", "white", "navy blue", "gray", "red", "green", "beige", "pink", "brown",
                        "light blue", "dark grey", "olive", "burgundy", "khaki", "purple", "yellow", "teal")),
    "wood": ("color", ("espresso", "white", "black", "walnut", "rustic brown", "gray wash", "natural oak",
                       "vintage brown", "cherry")),
    "upholstery": ("color", ("dark grey", "light grey", "beige", "navy blue", "green velvet", "black leather",
                             "brown leather", "cream", "teal")),
    "device": ("color", ("black", "white", "silver", "space gray", "blue", "rose gold", "red", "midnight green")),
    "shade": ("color", ("nude beige", "ruby red", "coral pink", "berry", "mauve", "classic red", "plum",
                        "peach", "cherry red", "mocha")),
    "hair": ("color", ("natural black", "dark brown", "medium brown", "ash blonde", "honey blonde",
                       "platinum blonde", "auburn", "burgundy red")),
    "denim": ("color", ("dark wash", "light wash", "medium indigo", "black", "stonewash", "gray denim")),
    "apparel": ("size", ("x-small", "small", "medium", "large", "x-large", "xx-large", "3x-large")),
    "shoe": ("size", ("6", "6.5", "7", "7.5", "8", "8.5", "9", "9.5", "10", "10.5", "11", "12")),
    "waist": ("size", ("28w x 30l", "30w x 30l", "30w x 32l", "32w x 32l", "34w x 32l", "36w x 32l",
                       "38w x 34l")),
    "bed": ("size", ("twin", "full", "queen", "king", "california king")),
    "floz": ("size", ("1.7 fl oz", "3.4 fl oz", "6.76 fl oz", "8 fl oz", "12 fl oz", "16.9 fl oz")),
    "perfume": ("size", ("1 fl oz", "1.7 fl oz", "3.4 fl oz", "6.7 fl oz")),
    "cream": ("size", ("0.5 ounce", "1 ounce", "1.7 ounce", "2.5 ounce", "4 ounce")),
    "hairlen": ("size", ("14 inch", "16 inch", "18 inch", "20 inch", "22 inch")),
    "weight": ("size", ("5.3 ounce", "8 ounce", "12 ounce", "16 ounce", "2 pound", "5 pound")),
    "liquid": ("size", ("16.9 fl oz", "25.3 fl oz", "33.8 fl oz", "1 gallon")),
    "pack": ("item package quantity", ("pack of 1", "pack of 2", "pack of 3", "pack of 4", "pack of 6",
                                       "pack of 12")),
    "count": ("size", ("12 count", "20 count", "24 count", "36 count", "50 count", "100 count")),
    "set": ("item package quantity", ("set of 1", "set of 2", "set of 4", "set of 6")),
    "tier": ("size", ("3 tier", "4 tier", "5 tier", "6 tier")),
    "desk": ("size", ("32 inch", "40 inch", "47 inch", "55 inch", "63 inch")),
    "tv": ("size", ("43 inch", "55 inch", "65 inch", "70 inch")),
    "pillow": ("size", ("16 x 16 inch", "18 x 18 inch", "20 x 20 inch", "22 x 22 inch", "24 x 24 inch")),
    "drawer": ("style", ("1 drawer", "2 drawer", "3 drawer", "open shelf")),
    "cable": ("size", ("3 ft", "6 ft", "10 ft", "15 ft", "25 ft")),
    "storage": ("capacity", ("32gb", "64gb", "128gb", "256gb", "512gb")),
    "mah": ("capacity", ("5000mah", "10000mah", "20000mah", "26800mah")),
    "cams": ("style", ("1 camera", "2 cameras", "3 cameras", "4 cameras")),
    "tablet": ("size", ("8 inch", "10.2 inch", "10.9 inch", "11 inch", "12.9 inch")),
    "band": ("size", ("38mm", "40mm", "41mm", "42mm", "44mm", "45mm")),
    "mount": ("size", ("26-55 inch", "32-65 inch", "37-70 inch", "42-85 inch")),
    "watt": ("style", ("20w", "30w", "45w", "65w", "100w")),
    "scent": ("scent", ("lavender", "vanilla", "unscented", "coconut", "eucalyptus", "rose", "citrus",
                        "sandalwood", "fresh cotton")),
    "roast": ("flavor name", ("light roast", "medium roast", "dark roast", "french vanilla", "hazelnut",
                              "espresso roast", "decaf")),
    "tea": ("flavor name", ("jasmine", "mint", "lemon ginger", "original", "honey", "matcha", "peach")),
    "bar": ("flavor name", ("chocolate chip", "peanut butter", "cookies and cream", "birthday cake",
                            "salted caramel", "blueberry", "mint chocolate")),
    "cake": ("flavor name", ("vanilla", "chocolate", "lemon", "red velvet", "funfetti", "carrot")),
    "jerky": ("flavor name", ("original", "teriyaki", "peppered", "sweet and spicy", "hickory smoked",
                              "sea salt")),
    "nuts": ("flavor name", ("lightly salted", "unsalted", "honey roasted", "sea salt", "smoked", "cinnamon")),
    "gummy": ("flavor name", ("assorted fruit", "sour", "strawberry", "tropical", "watermelon", "cherry")),
    "sauce": ("flavor name", ("marinara", "tomato basil", "arrabbiata", "alfredo", "vodka", "garlic")),
    "fizz": ("flavor name", ("lime", "grapefruit", "black cherry", "lemon", "mango", "raspberry", "unflavored")),
    "cracker": ("flavor name", ("sea salt", "cheddar", "rosemary", "everything", "black pepper", "original")),
    "choc": ("flavor name", ("dark chocolate", "milk chocolate", "sea salt caramel", "hazelnut",
                             "assorted")),
}


def _t(category, noun, query, path, variants, options, attributes, price):
    return ProductType(category, noun, query, path, tuple(variants.split(", ")), tuple(options.split()),
                       tuple(attributes.split(", ")), price)


BEAUTY = "Beauty & Personal Care"
FOOD = "Grocery & Gourmet Food"
FASHION = "Clothing, Shoes & Jewelry"
HOME = "Home & Kitchen › Furniture"
ELEC = "Electronics"

PRODUCT_TYPES: tuple[ProductType, ...] = (
    # beauty
    _t("beauty", "Shampoo", "shampoo", f"{BEAUTY} › Hair Care › Shampoo & Conditioner › Shampoos",
       "Argan Oil, Tea Tree, Biotin, Rosemary Mint, Coconut Milk, Keratin, Charcoal", "floz scent",
       "sulfate free, paraben free, cruelty free, color safe, @dry hair, @hair growth, @damaged hair, "
       "+natural ingredients, +essential oils", (6, 38)),
    _t("beauty", "Conditioner", "conditioner", f"{BEAUTY} › Hair Care › Shampoo & Conditioner › Conditioners",
       "Argan Oil, Shea Butter, Avocado, Coconut, Honey, Aloe Vera", "floz scent",
       "sulfate free, paraben free, cruelty free, leave in, @dry hair, @curly hair, @damaged hair, "
       "+natural ingredients", (7, 36)),
    _t("beauty", "Eau de Parfum Spray for Women", "perfume for women",
       f"{BEAUTY} › Fragrance › Women's › Eau de Parfum", "Rose Petal, Midnight Bloom, Amber Musk, White Jasmine, "
       "Velvet Orchid, Citrus Blossom", "perfume", "long lasting, travel size, fine mist, cruelty free, "
       "+floral notes, +refillable bottle", (18, 140)),
    _t("beauty", "Eau de Toilette Spray for Men", "cologne for men", f"{BEAUTY} › Fragrance › Men's › Cologne",
       "Ocean Wood, Black Cedar, Sport, Noir, Vetiver, Citrus Leather", "perfume",
       "long lasting, travel size, fine mist, +woody notes, +fresh scent", (15, 120)),
    _t("beauty", "Face Moisturizer", "face moisturizer",
       f"{BEAUTY} › Skin Care › Face › Creams & Moisturizers › Face Moisturizers",
       "Hydrating, Daily Defense, Night Repair, Vitamin C, Retinol, Ceramide", "cream",
       "anti aging, fragrance free, non greasy, dermatologist tested, oil free, @sensitive skin, @dry skin, "
       "+hyaluronic acid", (9, 65)),
    _t("beauty", "Under Eye Cream", "eye cream", f"{BEAUTY} › Skin Care › Eyes › Creams",
       "Caffeine, Peptide, Retinol, Cucumber, Collagen", "cream",
       "anti aging, fragrance free, easy to use, @dark circles, @puffy eyes, +vitamin c, +hyaluronic acid",
       (8, 55)),
    _t("beauty", "Nail Polish", "nail polish", f"{BEAUTY} › Foot, Hand & Nail Care › Nail Art & Polish › Nail Polish",
       "Gel Shine, Classic Lacquer, Glitter, Matte, Pastel", "shade",
       "long lasting, quick dry, non toxic, chip resistant, high gloss, cruelty free", (4, 22)),
    _t("beauty", "Makeup Brush Set", "makeup brushes",
       f"{BEAUTY} › Tools & Accessories › Makeup Brushes & Tools › Brush Sets",
       "Professional, Kabuki, Travel, Rose Gold, Bamboo", "color count",
       "easy to clean, cruelty free, high quality, synthetic hair, +travel case, @foundation blending", (8, 45)),
    _t("beauty", "Lipstick", "lipstick", f"{BEAUTY} › Makeup › Lips › Lipstick",
       "Velvet Matte, Satin, Cream, Liquid, Tinted Balm", "shade",
       "long lasting, matte finish, cruelty free, waterproof, moisturizing, +vitamin e", (5, 32)),
    _t("beauty", "Clip in Hair Extensions", "hair extensions",
       f"{BEAUTY} › Hair Care › Hair Extensions, Wigs & Accessories › Hair Extensions",
       "Straight, Body Wave, Curly, Silky, Thick", "hair hairlen",
       "natural looking, heat resistant, high quality, easy to use, +human hair", (15, 130)),
    _t("beauty", "Body Wash", "body wash", f"{BEAUTY} › Skin Care › Body › Cleansers › Body Washes",
       "Oatmeal, Shea Butter, Charcoal, Eucalyptus, Honey Almond", "floz scent",
       "paraben free, moisturizing, cruelty free, @sensitive skin, @dry skin, +natural ingredients", (5, 28)),
    _t("beauty", "Natural Deodorant", "deodorant", f"{BEAUTY} › Personal Care › Deodorants & Antiperspirants",
       "Stick, Cream, Spray, Sport, Gentle", "scent pack",
       "aluminum free, long lasting, paraben free, @sensitive skin, +natural ingredients", (6, 30)),
    _t("beauty", "Electric Toothbrush", "electric toothbrush",
       f"{BEAUTY} › Oral Care › Toothbrushes & Accessories › Power Toothbrushes",
       "Sonic, Whitening, Gum Care, Kids, Travel", "device",
       "rechargeable, long battery life, +travel case, +smart timer, @sensitive teeth", (20, 120)),
    # food
    _t("food", "Protein Bars", "protein bars", f"{FOOD} › Snacks & Sweets › Bars › Protein Bars",
       "Whey, Plant Protein, Crispy, Chewy, Double Layer", "bar count",
       "gluten free, high protein, low sugar, keto friendly, non gmo, individually wrapped", (12, 45)),
    _t("food", "Whole Bean Coffee", "whole bean coffee",
       f"{FOOD} › Beverages › Coffee, Tea & Cocoa › Coffee › Whole Coffee Beans",
       "Colombian, Ethiopian, House Blend, Sumatra, Breakfast Blend, Italian", "roast weight",
       "usda organic, fair trade, non gmo, kosher certified, low acid", (9, 40)),
    _t("food", "Green Tea Bags", "green tea", f"{FOOD} › Beverages › Coffee, Tea & Cocoa › Tea › Green Tea",
       "Sencha, Gunpowder, Jasmine Pearl, Matcha Blend, Dragon Well", "tea count",
       "usda organic, non gmo, caffeine free, individually wrapped, +natural flavors", (4, 25)),
    _t("food", "Cake Mix", "cake mix", f"{FOOD} › Pantry Staples › Cooking & Baking › Baking Mixes › Cake Mixes",
       "Classic, Bakery Style, Moist Supreme, Simple, Celebration", "cake pack",
       "gluten free, dairy free, keto friendly, low carb, sugar free, non gmo", (4, 30)),
    _t("food", "Beef Jerky", "beef jerky", f"{FOOD} › Meat & Seafood › Jerky & Dried Meats › Jerky",
       "Steakhouse, Trail, Ranch, Smokehouse, Craft", "jerky pack",
       "high protein, grass fed, gluten free, low fat, shelf stable, +no preservatives", (7, 48)),
    _t("food", "Mixed Nuts", "mixed nuts", f"{FOOD} › Snacks & Sweets › Nuts & Seeds › Mixed Nuts",
       "Deluxe, Heart Healthy, Trail Mix, Cashew Almond, Pecan Blend", "nuts weight",
       "non gmo, gluten free, plant based, kosher certified, +resealable bag", (6, 35)),
    _t("food", "Gummy Candy", "gummy candy", f"{FOOD} › Snacks & Sweets › Candy & Chocolate › Gummy Candy",
       "Bears, Worms, Rings, Sharks, Fruit Slices", "gummy weight",
       "fat free, gluten free, individually wrapped, vegan, +natural flavors, @party favors", (4, 26)),
    _t("food", "Extra Virgin Olive Oil", "olive oil",
       f"{FOOD} › Pantry Staples › Cooking & Baking › Oils, Vinegars & Salad Dressings › Oils › Olive",
       "Greek, Italian, Spanish, Californian, Koroneiki", "liquid pack",
       "cold pressed, non gmo, usda organic, kosher certified, first cold pressed", (8, 60)),
    _t("food", "Pasta Sauce", "pasta sauce", f"{FOOD} › Pantry Staples › Sauces, Gravies & Marinades › Pasta Sauces",
       "Homestyle, Slow Cooked, Chunky Garden, Roasted, Trattoria", "sauce pack",
       "low sodium, no sugar added, gluten free, non gmo, keto friendly, plant based", (4, 36)),
    _t("food", "Sparkling Water", "sparkling water",
       f"{FOOD} › Beverages › Bottled Beverages, Water & Drink Mixes › Water › Sparkling Water",
       "Spring, Mineral, Essence, Seltzer, Alpine", "fizz pack",
       "zero calorie, caffeine free, sugar free, non gmo, +natural flavors", (5, 32)),
    _t("food", "Crackers", "crackers", f"{FOOD} › Snacks & Sweets › Crackers",
       "Thin, Seed, Water, Artisan, Multigrain", "cracker pack",
       "gluten free, whole grain, non gmo, low sodium, plant based, dairy free", (3, 28)),
    _t("food", "Raw Honey", "honey", f"{FOOD} › Pantry Staples › Jams, Jellies & Sweet Spreads › Honey",
       "Wildflower, Clover, Manuka, Orange Blossom, Buckwheat", "weight pack",
       "raw unfiltered, usda organic, non gmo, gluten free, kosher certified", (6, 55)),
    _t("food", "Chocolate Truffles", "chocolate gift box",
       f"{FOOD} › Snacks & Sweets › Candy & Chocolate › Chocolate Truffles",
       "Belgian, Swiss, Holiday, Gourmet, Valentine", "choc count",
       "individually wrapped, kosher certified, gluten free, +gift box, @valentine day", (10, 60)),
    # fashion
    _t("fashion", "Women's Crew Neck T-Shirt", "women's t-shirts",
       f"{FASHION} › Women › Clothing › Tops, Tees & Blouses › T-Shirts",
       "Basic, Tunic, Oversized, V Neck, Graphic", "color apparel",
       "machine wash, short sleeve, relaxed fit, cotton spandex, soft material, @daily wear", (8, 30)),
    _t("fashion", "Men's Stretch Jeans", "men's jeans", f"{FASHION} › Men › Clothing › Jeans",
       "Slim Straight, Athletic, Bootcut, Tapered, Relaxed", "denim waist",
       "slim fit, machine wash, +button closure, cotton spandex, regular fit", (20, 60)),
    _t("fashion", "Men's Running Shoes", "men's running shoes", f"{FASHION} › Men › Shoes › Athletic › Running",
       "Trail, Road, Cushion, Tempo, Knit", "color shoe",
       "+rubber sole, lace up, non slip, lightweight, +memory foam, +arch support", (30, 110)),
    _t("fashion", "Women's Fashion Sneakers", "women's sneakers", f"{FASHION} › Women › Shoes › Fashion Sneakers",
       "Canvas, Platform, Slip On, Low Top, Walking", "color shoe",
       "+rubber sole, slip on, non slip, lightweight, +arch support, +memory foam", (25, 90)),
    _t("fashion", "Women's High Waist Leggings", "women's leggings",
       f"{FASHION} › Women › Clothing › Active › Active Leggings",
       "Yoga, Running, Seamless, Fleece Lined, Capri", "color apparel",
       "high waist, tummy control, moisture wicking, polyester spandex, butt lifting, machine wash", (12, 40)),
    _t("fashion", "Men's Pullover Hoodie", "men's hoodies", f"{FASHION} › Men › Clothing › Active › Active Hoodies",
       "Fleece, Athletic, Heavyweight, Zip Pocket, Classic", "color apparel",
       "long sleeve, machine wash, +drawstring closure, fleece lined, relaxed fit", (18, 55)),
    _t("fashion", "Women's Casual Dress", "women's dresses", f"{FASHION} › Women › Clothing › Dresses › Casual",
       "Floral, Wrap, Swing, Maxi, Shirt", "color apparel",
       "short sleeve, long sleeve, hand wash, +elastic waist, polyester spandex, @daily wear", (18, 60)),
    _t("fashion", "Men's Dress Shirt", "men's dress shirts", f"{FASHION} › Men › Clothing › Shirts › Dress Shirts",
       "Oxford, Poplin, Stretch, Wrinkle Free, Twill", "color apparel",
       "slim fit, long sleeve, +button closure, easy care, machine wash, regular fit", (20, 55)),
    _t("fashion", "Women's Flat Sandals", "women's sandals", f"{FASHION} › Women › Shoes › Sandals › Flat",
       "Strappy, Slide, Braided, Thong, Gladiator", "color shoe",
       "open toe, non slip, +rubber sole, +ankle strap, +arch support", (15, 50)),
    _t("fashion", "Men's Athletic Shorts", "men's shorts", f"{FASHION} › Men › Clothing › Shorts",
       "Training, Running, Mesh, Cargo, Basketball", "color apparel",
       "quick drying, +elastic waistband, +drawstring closure, moisture wicking, machine wash", (12, 35)),
    _t("fashion", "Women's Wide Leg Jumpsuit", "women's jumpsuits",
       f"{FASHION} › Women › Clothing › Jumpsuits, Rompers & Overalls",
       "Sleeveless, Belted, Halter, Button Down, Linen", "color apparel",
       "wide leg, high waist, sleeveless, polyester spandex, machine wash, @daily wear", (20, 60)),
    _t("fashion", "Baseball Cap", "baseball caps", f"{FASHION} › Men › Accessories › Hats & Caps › Baseball Caps",
       "Classic, Trucker, Distressed, Low Profile, Dad Hat", "color",
       "+adjustable strap, cotton, +sun protection, washed denim, unisex", (8, 28)),
    _t("fashion", "Athletic Crew Socks", "athletic socks", f"{FASHION} › Men › Clothing › Socks › Athletic Socks",
       "Cushioned, Ankle, Performance, Compression, Crew", "color pack",
       "moisture wicking, arch support, +cushioned sole, breathable, machine wash", (9, 30)),
    # furniture
    _t("furniture", "Platform Bed Frame", "bed frame",
       f"{HOME} › Bedroom Furniture › Beds, Frames & Bases › Beds", "Metal, Upholstered, Wood, Storage, Canopy",
       "bed wood", "easy assemble, +metal frame, +storage space, solid wood, noise free, +no box spring needed",
       (90, 420)),
    _t("furniture", "End Table", "end table", f"{HOME} › Living Room Furniture › Tables › End Tables",
       "Industrial, Farmhouse, Round, Narrow, C Shaped", "wood",
       "easy assemble, +storage shelf, +wood finish, +steel frame, space saving, @living room", (25, 110)),
    _t("furniture", "Bookshelf", "bookshelf", f"{HOME} › Home Office Furniture › Bookcases",
       "Ladder, Industrial, Cube, Corner, Open", "wood tier",
       "easy assemble, engineered wood, +storage space, heavy duty, +metal frame, @living room", (35, 180)),
    _t("furniture", "Office Desk Chair", "office chair",
       f"{HOME} › Home Office Furniture › Home Office Chairs › Desk Chairs",
       "Ergonomic, Mesh, Executive, Task, Swivel", "upholstery",
       "+lumbar support, adjustable height, easy assemble, heavy duty, pu leather, +armrests", (45, 260)),
    _t("furniture", "Loveseat Sofa", "sofa couch", f"{HOME} › Living Room Furniture › Sofas & Couches",
       "Mid Century, Chesterfield, Tufted, Convertible, Modern", "upholstery",
       "mid century, easy assemble, high density, solid wood, @living room, @small spaces", (150, 650)),
    _t("furniture", "Dining Chairs", "dining chairs", f"{HOME} › Kitchen & Dining Room Furniture › Chairs",
       "Upholstered, Farmhouse, Modern, Wishbone, Ghost", "upholstery set",
       "solid wood, easy assemble, mid century, non slip, @dining room, +padded seat", (60, 320)),
    _t("furniture", "TV Stand", "tv stand",
       f"{HOME} › Living Room Furniture › TV & Media Furniture › Television Stands & Entertainment Centers",
       "Farmhouse, Floating, Corner, Low Profile, Industrial", "wood tv",
       "+storage space, easy assemble, +cable management, engineered wood, @living room", (60, 300)),
    _t("furniture", "Storage Ottoman Bench", "storage ottoman", f"{HOME} › Living Room Furniture › Ottomans",
       "Tufted, Folding, Round, Rectangular, Cube", "upholstery",
       "+storage space, faux leather, easy assemble, foldable, @living room, @bedroom", (30, 140)),
    _t("furniture", "Nightstand", "nightstand", f"{HOME} › Bedroom Furniture › Nightstands",
       "Modern, Rustic, Floating, Wicker, Mid Century", "wood drawer",
       "easy assemble, solid wood, +storage space, +usb charging, @bedroom", (35, 160)),
    _t("furniture", "Computer Desk", "computer desk", f"{HOME} › Home Office Furniture › Home Office Desks",
       "Writing, Standing, L Shaped, Gaming, Study", "wood desk",
       "easy assemble, +steel frame, space saving, +storage shelf, @home office", (50, 280)),
    _t("furniture", "Bar Stools", "bar stools", f"{HOME} › Kitchen & Dining Room Furniture › Stools",
       "Counter Height, Swivel, Saddle, Backless, Industrial", "upholstery set",
       "adjustable height, easy assemble, +back support, +swivel seat, +footrest", (50, 260)),
    _t("furniture", "Shoe Rack", "shoe rack", f"{HOME} › Entryway Furniture › Shoe Racks",
       "Bamboo, Metal, Stackable, Narrow, Bench", "wood tier",
       "easy assemble, space saving, heavy duty, +metal frame, @entryway", (20, 90)),
    _t("furniture", "Throw Pillow Covers", "throw pillow covers",
       "Home & Kitchen › Bedding › Decorative Pillows, Inserts & Covers › Throw Pillow Covers",
       "Boho, Linen, Velvet, Plaid, Geometric", "color pillow",
       "double sided, machine washable, +hidden zipper, @living room, @couch sofa", (8, 35)),
    # electronics
    _t("electronics", "Wireless Earbuds", "wireless earbuds",
       f"{ELEC} › Headphones, Earbuds & Accessories › Headphones & Earbuds › Earbud Headphones",
       "Sport, Pro, Mini, Bass, Active", "device",
       "noise cancelling, wireless bluetooth, water resistant, hands free, +charging case, "
       "+long battery life", (18, 150)),
    _t("electronics", "Over Ear Headphones", "over ear headphones",
       f"{ELEC} › Headphones, Earbuds & Accessories › Headphones & Earbuds › Over-Ear Headphones",
       "Studio, Wireless, Gaming, Travel, Hi-Fi", "device",
       "noise cancelling, wireless bluetooth, foldable design, +stereo sound, +built in microphone", (25, 220)),
    _t("electronics", "HDMI Cable", "hdmi cable",
       f"{ELEC} › Accessories & Supplies › Audio & Video Accessories › Cables › HDMI Cables",
       "Braided, Slim, Ultra, Flat, Right Angle", "cable pack",
       "high speed, 4k ultra hd, gold plated, plug and play, +ethernet", (5, 30)),
    _t("electronics", "USB C Wall Charger", "usb c charger",
       f"{ELEC} › Cell Phones & Accessories › Chargers & Power Adapters › Wall Chargers",
       "GaN, Dual Port, Compact, Foldable, Travel", "watt device",
       "fast charging, compact size, +foldable plug, usb c, +cable included", (9, 50)),
    _t("electronics", "Security Camera", "security camera",
       f"{ELEC} › Camera & Photo › Video Surveillance › Surveillance Cameras",
       "Outdoor, Indoor, Pan Tilt, Doorbell, Spotlight", "cams",
       "+night vision, +motion detection, easy install, +two way audio, 1080p hd, weatherproof", (25, 200)),
    _t("electronics", "Portable Bluetooth Speaker", "bluetooth speaker",
       f"{ELEC} › Portable Audio & Video › Portable Speakers & Docks › Portable Bluetooth Speakers",
       "Mini, Rugged, Party, Outdoor, Bass", "device",
       "water resistant, +stereo sound, easy carry, wireless bluetooth, +long battery life", (15, 130)),
    _t("electronics", "Tablet Case", "tablet case",
       f"{ELEC} › Computers & Accessories › Tablet Accessories › Bags, Cases & Sleeves › Cases",
       "Folio, Rugged, Keyboard, Slim, Rotating", "color tablet",
       "shockproof, auto sleep wake, lightweight, +pencil holder, +kickstand", (9, 45)),
    _t("electronics", "TV Wall Mount", "tv wall mount", f"{ELEC} › Television & Video › Accessories › TV Mounts",
       "Full Motion, Tilting, Fixed, Articulating, Low Profile", "mount",
       "heavy duty, easy install, full motion, +steel frame, +cable management", (18, 90)),
    _t("electronics", "USB Flash Drive", "usb flash drive",
       f"{ELEC} › Computers & Accessories › Data Storage › USB Flash Drives",
       "Swivel, Metal, Mini, Dual Drive, Keychain", "storage pack",
       "high speed, usb 3.0, plug and play, metal casing, +key chain", (6, 45)),
    _t("electronics", "Wireless Mouse", "wireless mouse",
       f"{ELEC} › Computers & Accessories › Computer Accessories & Peripherals › Keyboards, Mice & Accessories › Mice",
       "Silent, Ergonomic, Vertical, Travel, Gaming", "device",
       "silent click, ergonomic design, rechargeable, plug and play, wireless bluetooth", (9, 60)),
    _t("electronics", "Portable Power Bank", "power bank",
       f"{ELEC} › Cell Phones & Accessories › Chargers & Power Adapters › Portable Power Banks",
       "Slim, Magnetic, Solar, Mini, Ultra", "mah device",
       "fast charging, compact size, +led display, usb c, +built in cable", (15, 70)),
    _t("electronics", "Replacement Remote Control", "tv remote",
       f"{ELEC} › Television & Video › Accessories › Remote Controls",
       "Universal, Smart TV, Voice, Backlit, Simple", "pack",
       "easy use, batteries included, easy setup, +voice control, @smart tv", (6, 30)),
    _t("electronics", "Smart Watch Band", "watch band",
       f"{ELEC} › Wearable Technology › Accessories › Bands", "Sport, Milanese, Leather, Braided, Nylon Loop",
       "color band", "quick release, stainless steel, soft silicone, adjustable, breathable", (7, 40)),
)

BRAND_SYLLABLES = ("ve", "lo", "ra", "ki", "no", "ta", "mi", "su", "ze", "lu", "ar", "on", "el", "ba", "do",
                   "ri", "sa", "co", "ny", "va", "pe", "ma", "ti", "go", "fi", "xo")

DESCRIPTION_OPENERS = (
    "Meet the {brand} {variant} {noun}, made for people who want {pre} quality without the fuss.",
    "The {brand} {variant} {noun} brings together thoughtful design and honest materials.",
    "Upgrade your routine with the {variant} {noun} from {brand}.",
    "{brand} designed this {variant} {noun} after listening to thousands of customers.",
)
DESCRIPTION_MIDDLES = (
    "It is {attrs}, so it fits right into everyday life.",
    "Every unit is checked by hand and it is {attrs}.",
    "Customers choose it because it is {attrs}.",
)
DESCRIPTION_CLOSERS = (
    "Available in several options; pick the one that suits you best.",
    "Backed by our friendly customer service and a 30 day return policy.",
    "A thoughtful gift for family and friends.",
    "Order today and see the difference for yourself.",
)
BULLET_TEMPLATES = {  # {this}/{is} agree with the noun: "this shampoo is", "these protein bars are"
    "plain": ("{ATTR}: {this} {noun} {is_} {attr}, as promised on the label.",
              "{ATTR} - thoughtfully made to be {attr} from the first day of use.",
              "{ATTR}: we tested every batch to make sure it stays {attr}."),
    "for": ("MADE FOR {ATTR}: {this} {noun} {is_} designed for {attr}.",
            "IDEAL FOR {ATTR} - customers love it for {attr}."),
    "with": ("WITH {ATTR}: comes with {attr} for a better experience.",
             "{ATTR} INCLUDED - made with {attr}."),
}
GENERIC_BULLETS = (
    "WHAT YOU GET: the {noun} shown and a simple care card.",
    "SATISFACTION GUARANTEE: if you are not happy, contact us for a refund or replacement.",
    "QUALITY CHECKED: every order passes our inspection before shipping.",
)


def attribute_reading(marked: str) -> tuple[str, str]:
    """'@dry hair' -> ('dry hair', 'for'); '+essential oils' -> ('essential oils', 'with'); else 'plain'."""
    if marked[0] == "@":
        return marked[1:], "for"
    if marked[0] == "+":
        return marked[1:], "with"
    return marked, "plain"


def title_case(text: str) -> str:
    small = {"for", "with", "and", "of", "to", "in", "de"}
    words = text.split(" ")
    return " ".join(w if (i and w in small) else w[:1].upper() + w[1:] for i, w in enumerate(words))


def price_tag(pricing: list[float]) -> str:
    """The original's display rule: "$a" or "$a to $b", floats printed by Python (so $24.5, not $24.50)."""
    return f"${pricing[0]}" if len(pricing) == 1 else f"${pricing[0]} to ${pricing[1]}"


# ---------------------------------------------------------------- one product

def _brands(rng: random.Random, n: int) -> list[str]:
    names: list[str] = []
    while len(names) < n:
        name = "".join(rng.choice(BRAND_SYLLABLES) for _ in range(rng.choice((2, 2, 3)))).capitalize()
        if name not in names:
            names.append(name)
    return names


def _asin(rng: random.Random, taken: set[str]) -> str:
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    while True:  # real ASINs of the subset look like B07V1CR4HS: "B0" + 8 characters
        asin = "B0" + rng.choice("6789") + "".join(rng.choice(alphabet) for _ in range(7))
        if asin not in taken:
            taken.add(asin)
            return asin


def _pricing(rng: random.Random, low: float, high: float) -> list[float]:
    def cents(x: float) -> float:
        return round(int(x) + rng.choice((0.99, 0.95, 0.49, 0.5, 0.0, round(rng.random(), 2))), 2)

    base = cents(rng.uniform(low, high))
    if rng.random() < 0.2:  # about a fifth of WebShop's items list a price range over their options
        # kept under $950 so that every instruction gets its four price caps (goals.py)
        return [base, min(cents(base * rng.uniform(1.15, 1.6)), 949.99)]
    return [base]


def _options(rng: random.Random, ptype: ProductType) -> dict[str, list[str]]:
    n_groups = min(len(ptype.options), rng.choice((0, 1, 1, 2, 2, 2)))
    options: dict[str, list[str]] = {}
    for key in ptype.options[:n_groups]:
        name, pool = OPTION_POOLS[key]
        picked = set(rng.sample(pool, rng.randint(2, min(6, len(pool)))))
        options[name] = [v for v in pool if v in picked]  # keep the pool's natural order (sizes ascend)
    return options


def _title(rng, brand, variant, ptype, readings) -> str:
    plain = [a for a, r in readings if r == "plain"]
    lead = plain[0] if plain and rng.random() < 0.7 else None
    parts = [f"{brand} {variant} " + (f"{title_case(lead)} " if lead else "") + ptype.noun]
    tail = [a for a, r in readings if r == "for"]
    if tail:
        parts[0] += f" for {title_case(tail[0])}"
    extras = [title_case(a) for a in plain if a != lead][:2]
    extras += [f"with {title_case(a)}" for a, r in readings if r == "with"][:1]
    return ", ".join(parts + extras)


def _description(rng, brand, variant, ptype, readings) -> str:
    attrs = [a if r == "plain" else f"{r} {a}" for a, r in readings]
    joined = ", ".join(attrs[:-1]) + f" and {attrs[-1]}" if len(attrs) > 1 else attrs[0]
    pre = rng.choice(("reliable", "everyday", "premium", "lasting"))
    sentences = [rng.choice(DESCRIPTION_OPENERS), rng.choice(DESCRIPTION_MIDDLES), rng.choice(DESCRIPTION_CLOSERS)]
    fields = dict(brand=brand, variant=variant, noun=ptype.noun.lower(), pre=pre, attrs=joined)
    return " ".join(s.format(**fields) for s in sentences)


def _bullets(rng, ptype, readings) -> list[str]:
    noun = ptype.noun.lower()
    this, is_ = ("these", "are") if ptype.plural else ("this", "is")
    bullets = [rng.choice(BULLET_TEMPLATES[r]).format(ATTR=a.upper(), attr=a, noun=noun, this=this, is_=is_)
               for a, r in readings]
    rng.shuffle(bullets)
    return bullets + [rng.choice(GENERIC_BULLETS).format(noun=noun)]


def make_product(rng: random.Random, ptype: ProductType, brand: str, asin: str) -> dict:
    variant = rng.choice(ptype.variants)
    marked = rng.sample(ptype.attributes, rng.randint(2, min(5, len(ptype.attributes))))
    marked.sort(key=ptype.attributes.index)
    readings = [attribute_reading(m) for m in marked]
    title = _title(rng, brand, variant, ptype, readings)
    pricing = _pricing(rng, *ptype.price)
    return {
        "asin": asin,
        "name": title,
        "Title": title,
        "Description": _description(rng, brand, variant, ptype, readings),
        "BulletPoints": _bullets(rng, ptype, readings),
        "pricing": pricing,
        "Price": price_tag(pricing),
        "options": _options(rng, ptype),
        "Attributes": [a for a, _ in readings],
        "category": ptype.category,
        "query": ptype.query,
        "product_category": ptype.path,
        "Reviews": [],  # the original never loads reviews (the code is commented out): its Reviews page is empty
        "Rating": "N.A.",
        # kept for instruction writing; not used by the env
        "_variant": variant,
        "_noun": ptype.noun.lower(),
        "_plural": ptype.plural,
        "_readings": readings,
    }


# ---------------------------------------------------------------- instructions

OPENINGS = ("i need", "i am looking for", "i'm looking for", "i want", "find me", "i would like", "get me",
            "looking for", "i want to buy", "can you find me")
OPTION_PHRASES = {  # option name -> natural readings of one value
    "color": (" in {v}", " in {v} color", " in the color {v}"),
    "size": (" in size {v}", ", size {v}", " in {v}"),
    "flavor name": (" in {v} flavor", " with {v} flavor", ", {v} flavor"),
    "scent": (" with {v} scent", " in {v} scent"),
    "item package quantity": (", {v}", " in a {v}"),
    "capacity": (" with {v} capacity", " in {v}"),
    "style": (" in {v} style", ", {v}"),
}


def _article(phrase: str, plural: bool) -> str:
    if plural:
        return ""  # "i need gluten free protein bars"
    return "an " if phrase[0] in "aeio" or phrase.startswith("ul") else "a "  # "a usb ...", "an ultra ..."


def write_instruction(rng: random.Random, product: dict) -> dict:
    """One human-like instruction for `product`, in the record layout of `items_human_ins.json`."""
    readings = product["_readings"]
    chosen = rng.sample(readings, rng.randint(1, min(3, len(readings))))
    chosen.sort(key=readings.index)
    pre = [a for a, r in chosen if r == "plain"]
    post = [f"{r} {a}" for a, r in chosen if r != "plain"]
    options = {name: rng.choice(values) for name, values in product["options"].items() if rng.random() < 0.85}

    noun, plural = product["_noun"], product["_plural"]
    if rng.random() < 0.4:
        noun = f"{product['_variant'].lower()} {noun}"
    opening = rng.choice(OPENINGS)
    if pre and rng.random() < 0.3:  # "... a shampoo that is sulfate free and paraben free ..."
        core = f"{_article(noun, plural)}{noun} that {'are' if plural else 'is'} {' and '.join(pre)}"
    else:
        adjectives = (", " if len(pre) > 2 else " and ").join(pre)
        head = f"{adjectives} {noun}" if adjectives else noun
        core = f"{_article(head, plural)}{head}"
    if post:
        core += " " + " and ".join(post)
    if options and rng.random() < 0.35:  # the synthetic goals' "with color: x, and size: y" style
        core += " with " + ", and ".join(f"{k}: {v}" for k, v in options.items())
    else:
        core += "".join(rng.choice(OPTION_PHRASES[k]).format(v=v) for k, v in options.items())
    return {
        "asin": product["asin"],
        "instruction": f"{opening} {core}",
        "instruction_attributes": [a for a, _ in chosen],
        "instruction_options": list(options.values()),
    }


def _instructions(rng: random.Random, product: dict, n: int) -> list[dict]:
    """`n` instructions for one product, distinct where a few draws allow it."""
    out: list[dict] = []
    for _ in range(n):
        for _attempt in range(4):
            record = write_instruction(rng, product)
            if all(record["instruction"] != o["instruction"] for o in out):
                break
        out.append(record)
    return out


# ---------------------------------------------------------------- the catalogue

def generate_catalogue(seed: int = SEED, num_products: int = NUM_PRODUCTS,
                       num_instructions: int = NUM_INSTRUCTIONS) -> list[dict]:
    """`num_products` products (all five categories, types in turn) carrying `num_instructions` instructions in
    all (1 or 2 each), shuffled like `items_shuffle_1000.json`. A pure function of its arguments."""
    if not num_products <= num_instructions <= 2 * num_products:
        raise ValueError("each product carries 1 or 2 instructions: need num_products <= num_instructions <= 2x")
    rng = random.Random(seed)
    brands = {c: _brands(rng, 40) for c in CATEGORIES}
    taken: set[str] = set()
    products = []
    for i in range(num_products):
        ptype = PRODUCT_TYPES[i % len(PRODUCT_TYPES)]
        products.append(make_product(rng, ptype, rng.choice(brands[ptype.category]), _asin(rng, taken)))
    rng.shuffle(products)
    twice = set(rng.sample(range(num_products), num_instructions - num_products))
    for i, product in enumerate(products):
        product["instructions"] = _instructions(rng, product, 2 if i in twice else 1)
        for key in ("_variant", "_noun", "_plural", "_readings"):
            del product[key]
    return products
