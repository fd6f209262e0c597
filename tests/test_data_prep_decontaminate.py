"""Benchmark decontamination: planted copies of every kind are caught, similar but new medical text is kept.

The benchmark folder and the training rows are built here: 60 items over the nine task files
(vignettes, PubMedQA abstracts with 8-12 word questions, MedMCQA and MMLU questions), copies of
them planted in training rows in every way the issue lists, and over 200 new rows written from the
same vocabulary, templates and boilerplate ("Which of the following is the most likely diagnosis?").
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
from helpers import read_jsonl, write_jsonl

from common.files import sha256_file
from data_prep.decontaminate import (
    TASKS,
    BenchmarkIndex,
    decontaminate_rows,
    main,
    normalize,
    row_text,
)

GENERIC_STEMS = [
    "Which of the following is the most likely diagnosis?",
    "Which of the following is the most appropriate next step in management?",
    "Which of the following is the most likely cause of this patient's condition?",
]
NORMAL_VITALS = ("Temperature is 37°C (98.6°F), pulse is 80/min, respirations are 14/min, and blood pressure "
                 "is 120/80 mm Hg.")
# diagnosis: (symptoms, examination findings, (laboratory test, unit, low, high)); the benchmark uses the first 14.
DISEASES = {
    "Community-acquired pneumonia": (
        ["fever", "a productive cough", "pleuritic chest pain", "shortness of breath"],
        ["crackles over the right lower lobe", "dullness to percussion at the left base",
         "bronchial breath sounds over the right middle lobe"],
        ("Leukocyte count", "/mm3", 12000, 24000)),
    "Acute pancreatitis": (
        ["epigastric pain radiating to the back", "nausea", "repeated vomiting", "anorexia"],
        ["epigastric tenderness with guarding", "periumbilical ecchymosis",
         "hypoactive bowel sounds and abdominal distension"],
        ("Serum lipase", "U/L", 600, 3000)),
    "Diabetic ketoacidosis": (
        ["polyuria", "polydipsia", "diffuse abdominal pain", "confusion"],
        ["deep rapid respirations with a fruity odor", "dry mucous membranes and poor turgor",
         "diffuse abdominal tenderness without rebound"],
        ("Serum glucose", "mg/dL", 420, 780)),
    "Infective endocarditis": (
        ["intermittent fevers", "night sweats", "fatigue", "weight loss"],
        ["a new holosystolic murmur at the apex", "painless macules on the palms",
         "splinter hemorrhages under several fingernails"],
        ("Erythrocyte sedimentation rate", "mm/h", 60, 110)),
    "Pulmonary embolism": (
        ["sudden shortness of breath", "pleuritic chest pain", "hemoptysis", "lightheadedness"],
        ["a swollen and tender left calf", "tachypnea with clear lungs",
         "a loud pulmonic component of the second heart sound"],
        ("D-dimer concentration", "ng/mL", 900, 4000)),
    "Acute appendicitis": (
        ["periumbilical pain migrating to the right lower quadrant", "anorexia", "nausea", "low-grade fever"],
        ["tenderness at McBurney point", "pain in the right lower quadrant on left-sided pressure",
         "pain on passive extension of the right hip"],
        ("Leukocyte count", "/mm3", 11000, 18000)),
    "Guillain-Barre syndrome": (
        ["ascending weakness of the legs", "tingling of the feet", "difficulty climbing stairs", "back pain"],
        ["absent ankle and knee reflexes", "symmetric weakness of the lower limbs",
         "reduced vibration sense in the toes"],
        ("Cerebrospinal fluid protein", "mg/dL", 90, 240)),
    "Myasthenia gravis": (
        ["drooping eyelids", "double vision by evening", "fatigable chewing", "difficulty swallowing"],
        ["bilateral ptosis that worsens with sustained upgaze", "weak neck flexion",
         "diplopia on prolonged lateral gaze"],
        ("Acetylcholine receptor antibody titer", "nmol/L", 3, 40)),
    "Systemic lupus erythematosus": (
        ["joint pain", "a facial rash after sun exposure", "fatigue", "painless mouth ulcers"],
        ["an erythematous rash over the cheeks sparing the nasolabial folds",
         "swelling of several metacarpophalangeal joints", "painless ulcers on the palate"],
        ("Urine protein excretion", "g/24 h", 1, 5)),
    "Sarcoidosis": (
        ["a dry cough", "exertional dyspnea", "painful red nodules on the shins", "blurred vision"],
        ["tender erythematous nodules over both shins", "fine inspiratory crackles at both bases",
         "bilateral parotid gland enlargement"],
        ("Serum angiotensin-converting enzyme", "U/L", 80, 200)),
    "Graves disease": (
        ["palpitations", "heat intolerance", "weight loss despite a good appetite", "tremor"],
        ["a diffusely enlarged nontender thyroid with a bruit", "lid lag and proptosis",
         "a fine tremor of the outstretched hands"],
        ("Free thyroxine", "ng/dL", 3, 8)),
    "Addison disease": (
        ["fatigue", "salt craving", "dizziness on standing", "weight loss"],
        ["hyperpigmentation of the palmar creases and gums", "orthostatic hypotension", "darkening of recent scars"],
        ("Serum sodium", "mEq/L", 118, 129)),
    "Multiple myeloma": (
        ["back pain", "fatigue", "recurrent infections", "constipation"],
        ["point tenderness over the lumbar spine", "pallor of the conjunctivae", "tenderness over several ribs"],
        ("Serum calcium", "mg/dL", 11, 16)),
    "Bacterial meningitis": (
        ["severe headache", "fever", "neck stiffness", "vomiting"],
        ["nuchal rigidity with a positive Kernig sign", "a petechial rash on the trunk", "photophobia and confusion"],
        ("Cerebrospinal fluid leukocyte count", "/mm3", 1200, 6000)),
    "Acute cholecystitis": (
        ["right upper quadrant pain after fatty meals", "fever", "nausea", "vomiting"],
        ["inspiratory arrest on palpation of the right upper quadrant",
         "right upper quadrant tenderness with guarding", "mild scleral icterus"],
        ("Leukocyte count", "/mm3", 11000, 19000)),
    "Kawasaki disease": (
        ["five days of high fever", "red eyes", "cracked red lips", "swollen hands"],
        ["bilateral nonexudative conjunctival injection", "a strawberry tongue",
         "erythema and edema of the palms and soles"],
        ("Platelet count", "/mm3", 450000, 900000)),
    "Iron deficiency anemia": (
        ["fatigue", "exertional dyspnea", "craving for ice", "brittle nails"],
        ["conjunctival pallor", "spoon-shaped nails", "angular cheilitis"],
        ("Mean corpuscular volume", "fL", 62, 76)),
    "Gout": (
        ["sudden pain in the big toe", "swelling of the ankle", "redness over the joint", "pain at night"],
        ["a hot swollen first metatarsophalangeal joint", "tophi on the helix of the ear",
         "exquisite tenderness of the right ankle"],
        ("Serum urate", "mg/dL", 8, 13)),
    "Ectopic pregnancy": (
        ["lower abdominal pain", "vaginal spotting", "a missed period", "shoulder tip pain"],
        ["adnexal tenderness on the right", "cervical motion tenderness", "a closed cervical os"],
        ("Serum beta-hCG", "mIU/mL", 1500, 6000)),
    "Giant cell arteritis": (
        ["a new temporal headache", "jaw claudication", "scalp tenderness", "transient visual loss"],
        ["a thickened tender temporal artery", "reduced temporal artery pulsation", "tenderness over the scalp"],
        ("Erythrocyte sedimentation rate", "mm/h", 70, 120)),
}
BENCHMARK_DISEASES = list(DISEASES)[:14]
HISTORIES = ["{He} has a {k}-year history of {c}.", "{He} returned from a trip to {p} {k} days ago.",
             "{He} takes {d} daily.", "{He} has smoked {k} cigarettes daily for {k2} years.",
             "{He} drinks {k} beers on most days.", "{His} mother has {c}."]
OTHER_HISTORIES = ["Past history includes {c}.", "{He} travelled to {p} last month.", "Medications include {d}.",
                   "There is a family history of {c}."]
CONDITIONS = ["type 2 diabetes mellitus", "hypertension", "asthma", "hypothyroidism", "chronic kidney disease",
              "rheumatoid arthritis", "major depressive disorder", "HIV infection", "atrial fibrillation"]
PLACES = ["Thailand", "rural Mexico", "Kenya", "northern India", "the Amazon basin", "Vietnam", "Ghana", "Peru"]
DRUGS = ["metformin", "lisinopril", "levothyroxine", "atorvastatin", "sertraline", "omeprazole", "warfarin",
         "prednisone", "hydrochlorothiazide", "amlodipine"]

# PubMedQA: the question is "Does <intervention> reduce <outcome> in <population>?", 8 to 12 words.
INTERVENTIONS = ["early mobilisation", "vitamin D supplementation", "intraoperative dexmedetomidine",
                 "tranexamic acid", "high-flow nasal oxygen", "telephone follow-up", "prophylactic antibiotics",
                 "preoperative carbohydrate loading", "melatonin", "structured exercise training", "metformin",
                 "remote ischaemic preconditioning"]
OUTCOMES = ["postoperative delirium", "30-day mortality", "surgical site infection", "hospital readmission",
            "blood transfusion", "length of stay", "acute kidney injury", "falls", "reintubation"]
POPULATIONS = ["elderly hip fracture patients", "children with asthma", "adults after cardiac surgery",
               "pregnant women", "patients on haemodialysis", "nursing home residents", "obese adolescents",
               "stroke survivors", "preterm infants"]
DESIGNS = ["a randomised controlled trial", "a retrospective cohort study", "a prospective cohort study",
           "a case-control study", "a multicentre pragmatic trial"]

# Hand-written MedMCQA and MMLU items: (task, question, options), first option correct.
WRITTEN = [
    ("medmcqa", "Drug of choice for the treatment of absence seizures in a child is",
     ["Ethosuximide", "Phenytoin", "Carbamazepine", "Phenobarbital"]),
    ("medmcqa", "Koplik spots are pathognomonic of which viral infection?",
     ["Measles", "Rubella", "Mumps", "Varicella"]),
    ("medmcqa", "Most common site of carcinoid tumour in the gastrointestinal tract is",
     ["Appendix", "Ileum", "Rectum", "Stomach"]),
    ("medmcqa", "Nerve injured in fracture of the surgical neck of humerus:",
     ["Axillary nerve", "Radial nerve", "Ulnar nerve", "Musculocutaneous nerve"]),
    ("medmcqa", "Investigation of choice for detecting small amounts of pneumoperitoneum is",
     ["CT scan of the abdomen", "Erect chest X-ray", "Ultrasonography", "Barium meal"]),
    ("medmcqa", "Which antitubercular drug causes red-orange discoloration of urine and tears?",
     ["Rifampicin", "Isoniazid", "Ethambutol", "Pyrazinamide"]),
    ("medmcqa", "Earliest sign of vitamin A deficiency is",
     ["Night blindness", "Bitot spots", "Keratomalacia", "Corneal xerosis"]),
    ("medmcqa", "A 5-year-old child has a honey-coloured crusted lesion around the nose; the most likely causative "
                "organism is",
     ["Staphylococcus aureus", "Streptococcus pneumoniae", "Candida albicans", "Herpes simplex"]),
    ("medmcqa", "Hypersegmented neutrophils in the peripheral smear are characteristic of which anaemia?",
     ["Megaloblastic anaemia", "Iron deficiency anaemia", "Sideroblastic anaemia", "Aplastic anaemia"]),
    ("medmcqa", "Antidote used for the treatment of heparin overdose is",
     ["Protamine sulphate", "Vitamin K", "Fresh frozen plasma", "Desmopressin"]),
    ("mmlu_anatomy", "Which nerve provides motor innervation to the deltoid muscle?",
     ["Axillary nerve", "Radial nerve", "Musculocutaneous nerve", "Suprascapular nerve"]),
    ("mmlu_anatomy", "Through which opening does the mandibular division of the trigeminal nerve leave the skull?",
     ["Foramen ovale", "Foramen rotundum", "Superior orbital fissure", "Foramen spinosum"]),
    ("mmlu_anatomy", "The lateral rectus muscle is supplied by which cranial nerve?",
     ["Abducens nerve", "Oculomotor nerve", "Trochlear nerve", "Facial nerve"]),
    ("mmlu_anatomy", "Which structure passes through the carpal tunnel?",
     ["Median nerve", "Ulnar nerve", "Radial artery", "Palmaris longus tendon"]),
    ("mmlu_clinical_knowledge", "What is the maximum time a tourniquet should remain applied for venepuncture?",
     ["One minute", "Three minutes", "Five minutes", "Ten minutes"]),
    ("mmlu_clinical_knowledge", "Which of the following is the correct site for measuring a radial pulse?",
     ["The lateral aspect of the wrist", "The medial aspect of the wrist", "The antecubital fossa", "The neck"]),
    ("mmlu_clinical_knowledge", "How long should hands be washed with soap and water in a clinical setting?",
     ["At least 20 seconds", "5 seconds", "2 minutes", "10 minutes"]),
    ("mmlu_clinical_knowledge", "A patient with a Glasgow Coma Scale score of 8 requires which immediate "
                                "intervention?", ["Airway protection", "Lumbar puncture", "Oral fluids", "Sedation"]),
    ("mmlu_college_biology", "Which enzyme relieves supercoiling ahead of the replication fork?",
     ["Topoisomerase", "Helicase", "Primase", "DNA ligase"]),
    ("mmlu_college_biology", "In eukaryotic cells, oxidative phosphorylation takes place in which compartment?",
     ["Inner mitochondrial membrane", "Cytosol", "Golgi apparatus", "Nucleus"]),
    ("mmlu_college_biology", "Which type of bond links adjacent amino acids in a polypeptide chain?",
     ["Peptide bond", "Hydrogen bond", "Disulfide bond", "Glycosidic bond"]),
    ("mmlu_college_biology", "During which phase of meiosis does crossing over between homologous chromosomes "
                             "occur?", ["Prophase I", "Metaphase I", "Anaphase II", "Telophase II"]),
    ("mmlu_college_medicine", "Which hormone is secreted by the delta cells of the pancreatic islets?",
     ["Somatostatin", "Glucagon", "Insulin", "Pancreatic polypeptide"]),
    ("mmlu_college_medicine", "The rate-limiting enzyme of cholesterol synthesis is inhibited by which drug class?",
     ["Statins", "Fibrates", "Bile acid sequestrants", "Niacin"]),
    ("mmlu_college_medicine", "Which ion channel opening is responsible for the plateau phase of the cardiac "
                              "action potential?", ["L-type calcium channels", "Fast sodium channels",
                                                    "Inward rectifier potassium channels", "Funny channels"]),
    ("mmlu_college_medicine", "Which vitamin deficiency causes Wernicke encephalopathy?",
     ["Thiamine", "Niacin", "Pyridoxine", "Cobalamin"]),
    ("mmlu_medical_genetics", "Which mode of inheritance is typical of Duchenne muscular dystrophy?",
     ["X-linked recessive", "Autosomal dominant", "Autosomal recessive", "Mitochondrial"]),
    ("mmlu_medical_genetics", "Trinucleotide repeat expansion of CAG in the HTT gene causes which disorder?",
     ["Huntington disease", "Fragile X syndrome", "Myotonic dystrophy", "Friedreich ataxia"]),
    ("mmlu_medical_genetics", "What is the karyotype of a woman with classic Turner syndrome?",
     ["45,X", "47,XXY", "46,XX", "47,XXX"]),
    ("mmlu_medical_genetics", "Which gene is most commonly mutated in hereditary nonpolyposis colorectal cancer?",
     ["MLH1", "APC", "BRCA1", "TP53"]),
    ("mmlu_professional_medicine", "A 34-year-old woman has had episodic palpitations, sweating and pounding "
     "headaches for four months. Her blood pressure during an episode was 210/120 mm Hg and urinary metanephrines "
     "are markedly increased. Which of the following is the most appropriate initial pharmacotherapy before "
     "surgery?", ["Phenoxybenzamine", "Propranolol", "Hydrochlorothiazide", "Lisinopril"]),
    ("mmlu_professional_medicine", "A 61-year-old man who drinks heavily develops confusion, ataxia and nystagmus "
     "two days after admission for pancreatitis. Which of the following should be given before any "
     "glucose-containing fluid?", ["Thiamine", "Folic acid", "Vitamin B12", "Pyridoxine"]),
    ("mmlu_professional_medicine", "A 25-year-old woman has a malar rash, arthralgia of the hands and proteinuria "
     "of 2.1 g per day. Which of the following antibodies is most specific for her condition?",
     ["Anti-double-stranded DNA", "Antinuclear antibodies", "Anti-histone antibodies", "Rheumatoid factor"]),
    ("mmlu_professional_medicine", "A 70-year-old man with atrial fibrillation and a CHA2DS2-VASc score of 4 asks "
     "about stroke prevention. Which of the following is the most appropriate long-term therapy?",
     ["Apixaban", "Aspirin", "Clopidogrel", "No therapy"]),
]
# New MCQ stems for clean rows: the same subjects, none of them a benchmark question.
NEW_STEMS = [
    ("Which nerve provides motor innervation to the {}?", ["serratus anterior", "trapezius muscle", "diaphragm",
                                                          "tibialis anterior muscle", "biceps brachii"]),
    ("Drug of choice for the treatment of {} is", ["infantile spasms", "trigeminal neuralgia", "status epilepticus",
                                                   "myoclonic seizures in adolescents", "typhoid fever in pregnancy"]),
    ("Most common site of {} in the gastrointestinal tract is", ["lymphoma", "gastrointestinal stromal tumour",
                                                                "angiodysplasia", "diverticula", "adenocarcinoma"]),
    ("Which hormone is secreted by the {}?", ["alpha cells of the pancreatic islets", "chief cells of the parathyroid",
                                             "posterior pituitary", "zona glomerulosa", "juxtaglomerular cells"]),
    ("Which mode of inheritance is typical of {}?", ["cystic fibrosis", "Marfan syndrome", "hemophilia A",
                                                     "Leber hereditary optic neuropathy", "phenylketonuria"]),
]


def letters(options: list[str], style: str = "{}. {}") -> str:
    return "\n".join(style.format("ABCDEFGH"[i], option) for i, option in enumerate(options))


def lab_value(rng: random.Random, low: int, high: int) -> str:
    return f"{rng.uniform(low, high):.1f}" if high < 50 else str(rng.randint(low, high))


def vitals(rng: random.Random, his: str) -> str:
    return (f"{his} temperature is {rng.randint(365, 401) / 10}°C, pulse is {rng.randint(58, 130)}/min, "
            f"respirations are {rng.randint(12, 32)}/min, and blood pressure is {rng.randint(85, 170)}/"
            f"{rng.randint(50, 100)} mm Hg.")


def vignette(rng: random.Random, diagnosis: str, sex: str, normal_vitals: bool, stem: str) -> str:
    """A case in the benchmark's (MedQA's) words: demographics, history, vital signs, examination, a lab value."""
    symptoms, findings, (lab, unit, low, high) = DISEASES[diagnosis]
    he, his = ("He", "His") if sex == "man" else ("She", "Her")
    first, second = rng.sample(symptoms, 2)
    history = rng.choice(HISTORIES).format(He=he, His=his, k=rng.randint(2, 30), k2=rng.randint(5, 40),
                                           c=rng.choice(CONDITIONS), p=rng.choice(PLACES), d=rng.choice(DRUGS))
    return (f"A {rng.randint(18, 84)}-year-old {sex} comes to the physician because of {rng.randint(2, 14)} days "
            f"of {first} and {second}. {history} {NORMAL_VITALS if normal_vitals else vitals(rng, his)} Physical "
            f"examination shows {rng.choice(findings)}. {lab} is {lab_value(rng, low, high)} {unit}. {stem}")


def retold(rng: random.Random, diagnosis: str) -> str:
    """A new case of ``diagnosis`` in other words, with the benchmark's vital-sign boilerplate and generic stems."""
    symptoms, findings, (lab, unit, low, high) = DISEASES[diagnosis]
    sex = rng.choice(["man", "woman"])
    he, his = ("he", "His") if sex == "man" else ("she", "Her")
    first, second = rng.sample(symptoms, 2)
    history = rng.choice(OTHER_HISTORIES).format(He=he.capitalize(), c=rng.choice(CONDITIONS),
                                                 p=rng.choice(PLACES), d=rng.choice(DRUGS))
    return (f"A {sex} aged {rng.randint(18, 84)} presents with {first} that started {rng.randint(2, 14)} days ago; "
            f"{he} also mentions {second}. {history} {rng.choice([NORMAL_VITALS, vitals(rng, his)])} On examination "
            f"there is {rng.choice(findings)}, and the {lab.lower()} measures {lab_value(rng, low, high)} {unit}. "
            f"{rng.choice(GENERIC_STEMS)}")


def diagnoses(rng: random.Random, diagnosis: str) -> list[str]:
    """Four diagnoses, the right one first."""
    return [diagnosis, *rng.sample([d for d in DISEASES if d != diagnosis], 3)]


def pubmed_question(intervention: str, outcome: str, population: str) -> str:
    return f"Does {intervention} reduce {outcome} in {population}?"


def pubmed_combos() -> list[tuple[str, str, str]]:
    """Every (intervention, outcome, population) whose question has 8 to 12 words."""
    combos = [(i, o, p) for i in INTERVENTIONS for o in OUTCOMES for p in POPULATIONS]
    return [combo for combo in combos if 8 <= len(normalize(pubmed_question(*combo)).split()) <= 12]


def abstract(rng: random.Random, intervention: str, outcome: str, population: str) -> str:
    """A PubMedQA-style structured abstract with its own numbers."""
    n, treated = rng.randint(80, 2400), rng.randint(3, 40)
    return (f"BACKGROUND: {outcome.capitalize()} is common among {population} and adds to costs of care. "
            f"METHODS: We conducted {rng.choice(DESIGNS)} of {n} {population} enrolled between "
            f"{rng.randint(2004, 2012)} and {rng.randint(2013, 2021)}. Participants received {intervention} or usual "
            f"care. RESULTS: {outcome.capitalize()} occurred in {treated}% of the {intervention} group and in "
            f"{treated + rng.randint(1, 15)}% of controls (adjusted odds ratio {rng.randint(40, 95) / 100}; P = "
            f"0.0{rng.randint(1, 9)}). CONCLUSIONS: {intervention.capitalize()} was associated with less "
            f"{outcome} in this setting.")


def other_abstract(rng: random.Random, intervention: str, outcome: str, population: str) -> str:
    """An abstract on the same subjects in another journal's words."""
    return (f"Objective: to find out whether {intervention} lowers {outcome} among {population}. Design: "
            f"{rng.choice(DESIGNS)} in {rng.randint(2, 30)} hospitals with {rng.randint(80, 2400)} participants. "
            f"Main results: {outcome} was recorded in {rng.randint(3, 40)}% with {intervention} and "
            f"{rng.randint(3, 40)}% without it. Interpretation: the effect was "
            f"{rng.choice(['modest', 'large', 'uncertain', 'absent'])}.")


def build_benchmark(rng: random.Random) -> dict[str, list[dict]]:
    """60 items over the nine tasks, as the eval package writes them: id, text, question (and the answer)."""
    tasks: dict[str, list[dict]] = {task: [] for task in TASKS}
    for position, diagnosis in enumerate(BENCHMARK_DISEASES):
        case = vignette(rng, diagnosis, sex=["woman", "man"][position // 2 % 2], normal_vitals=position % 3 != 2,
                        stem=GENERIC_STEMS[position % 2])
        options = rng.sample(diagnoses(rng, diagnosis), 4)
        tasks["medqa_4options"].append({"question": case, "text": f"{case}\n{letters(options)}",
                                        "options": options, "answer": diagnosis})
    for intervention, outcome, population in rng.sample(pubmed_combos(), 12):
        question = pubmed_question(intervention, outcome, population)
        context = abstract(rng, intervention, outcome, population)
        tasks["pubmedqa"].append({"question": question, "context": context,
                                  "text": f"Abstract: {context}\nQuestion: {question}\nAnswer:"})
    for task, question, options in WRITTEN:
        shuffled = rng.sample(options, 4)
        tasks[task].append({"question": question, "text": f"{question}\n{letters(shuffled)}", "options": shuffled,
                            "answer": options[0]})
    for task, items in tasks.items():
        for number, item in enumerate(items):
            item["id"] = f"{task}-{number:04d}"
    return tasks


def write_benchmark(folder: Path, tasks: dict[str, list[dict]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for task, items in tasks.items():
        write_jsonl(folder / f"{task}.jsonl", items)
    return folder


def chat(user: str, assistant: str) -> dict:
    return {"messages": [{"role": "system", "content": "You are a helpful medical assistant."},
                         {"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}


def respaced(text: str) -> str:
    return text.replace(" ", "  \n\t").replace("\n", " \n ")


def planted_rows(rng: random.Random, tasks: dict[str, list[dict]]) -> list[tuple[str, dict, dict]]:
    """(kind, benchmark item, training row) for copies of every kind the issue lists."""
    everything = [item for items in tasks.values() for item in items]
    # Reordering the options leaves the question: it has to be specific, eight words or more.
    long_enough = [item for item in everything if len(normalize(item["question"]).split()) >= 8]
    mcqs = [item for item in long_enough if "options" in item]
    answer = "The answer is A. It follows from the findings described."
    planted = []
    for item in rng.sample(everything, 12):
        planted.append(("verbatim", item, chat(item["text"], answer)))
    changes = [str.upper, str.lower, respaced, lambda t: re.sub(r"[^\w\s]", "", t),
               lambda t: t.replace(". ", "; ").replace("?", ".").replace(",", " ,")]
    for number, item in enumerate(rng.sample(everything, 12)):
        planted.append(("case, whitespace, punctuation", item, chat(changes[number % 5](item["text"]), answer)))
    for item in rng.sample(mcqs, 12):
        options = item["options"][::-1] if rng.random() < 0.5 else item["options"][1:] + item["options"][:1]
        planted.append(("reordered options", item, chat(f"{item['question']}\n{letters(options, '({}) {}')}",
                                                        f"The answer is {item['answer']}.")))
    for item in rng.sample(everything, 12):
        prompt = (f"I am preparing for my exams and got this practice question wrong. Please explain the answer and "
                  f"why each other option is wrong.\n\n{item['text']}\n\nThank you, I have an exam next week.")
        planted.append(("embedded in a longer prompt", item, chat(prompt, "Let us go through it step by step. "
                                                                  "The key finding points to one option.")))
    for item in tasks["pubmedqa"] + rng.sample([i for i in long_enough if i not in tasks["pubmedqa"]], 8):
        asked = rng.choice(["{}", "Quick question: {} Please answer briefly.", "My professor asked us: {}"])
        size = "8-12 words" if len(normalize(item["question"]).split()) < 13 else "13+ words"
        planted.append((f"question alone, {size}", item, chat(asked.format(item["question"]), "Yes, in trials.")))
    return planted


def clean_rows(rng: random.Random, tasks: dict[str, list[dict]]) -> list[dict]:
    """New rows from the same vocabulary, templates and boilerplate as the benchmark; no copies."""
    rows = []
    for number in range(30):  # the benchmark's own template and boilerplate, on diseases it does not ask about
        diagnosis = list(DISEASES)[14 + number % 6]
        case = vignette(rng, diagnosis, rng.choice(["man", "woman"]), number % 2 == 0, rng.choice(GENERIC_STEMS))
        rows.append(chat(f"{case}\n{letters(rng.sample(diagnoses(rng, diagnosis), 4))}",
                         f"The answer is {diagnosis}. The presentation is typical of it."))
    for _ in range(50):  # new cases of every disease, in other words
        diagnosis = rng.choice(list(DISEASES))
        rows.append(chat(f"{retold(rng, diagnosis)}\n{letters(rng.sample(diagnoses(rng, diagnosis), 4), '({}) {}')}",
                         f"This is {diagnosis.lower()}."))
    asked = {item["question"] for item in tasks["pubmedqa"]}
    combos = [combo for combo in pubmed_combos() if pubmed_question(*combo) not in asked]
    for intervention, outcome, population in rng.sample(combos, 50):
        question = pubmed_question(intervention, outcome, population)
        context = other_abstract(rng, intervention, outcome, population)
        rows.append(chat(f"{context}\nQuestion: {question}", rng.choice(["Yes.", "No.", "Maybe."])))
    for diagnosis, (symptoms, findings, (lab, _, _, _)) in DISEASES.items():
        rows.append(chat(f"What are the typical features of {diagnosis.lower()}?",
                         f"Patients often report {symptoms[0]} and {symptoms[1]}; examination may show "
                         f"{findings[0]}. Measuring {lab.lower()} helps to confirm it."))
        rows.append(chat(f"A patient presents with {symptoms[2]} and {symptoms[3]}. {rng.choice(GENERIC_STEMS)}",
                         f"Consider {diagnosis.lower()} among others."))
    for template, subjects in NEW_STEMS:
        for subject in subjects:
            question = template.format(subject)
            rows.append(chat(f"{question}\n{letters(rng.sample(['Option one', 'Option two', 'Option three'], 3))}",
                             "The answer is A."))
            rows.append(chat(f"Explain briefly: {question}", "It is a classic examination topic."))
    for stem in GENERIC_STEMS:
        rows.append(chat(f"{stem} Explain how to approach such questions.", "Start with the key finding."))
    return rows


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rng = random.Random(20261125)
    tasks = build_benchmark(rng)
    folder = write_benchmark(tmp_path_factory.mktemp("benchmarks"), tasks)
    return tasks, folder, planted_rows(rng, tasks), clean_rows(rng, tasks)


def test_planted_copies_are_caught_and_similar_medical_text_is_kept(corpus):
    tasks, folder, planted, clean = corpus
    assert sum(len(items) for items in tasks.values()) == 60 and len(clean) >= 200
    index = BenchmarkIndex.from_folder(folder)
    rows = [row for _, _, row in planted] + clean
    kept, removed = decontaminate_rows(rows, index)
    flagged = {record["position"]: record for record in removed}

    by_kind: dict[str, list[bool]] = {}
    for position, (kind, item, _) in enumerate(planted):
        caught = position in flagged and flagged[position]["item_id"] == item["id"]
        by_kind.setdefault(kind, []).append(caught)
    recall = sum(sum(hits) for hits in by_kind.values()) / len(planted)
    false_positives = [flagged[p] for p in range(len(planted), len(rows)) if p in flagged]
    fp_rate = len(false_positives) / len(clean)
    print(f"\nplanted {len(planted)}, clean {len(clean)}; recall {recall:.3f}, false-positive rate {fp_rate:.3f}")
    for kind, hits in by_kind.items():
        print(f"  {kind:<32} {sum(hits)}/{len(hits)}")
    for record in false_positives:
        print(f"  false positive: {record['item_id']}: {record['overlap']!r}")
    # The clean rows are hard: with nothing treated as generic, a quarter of them would be removed.
    unfiltered = BenchmarkIndex.from_folder(folder, max_item_frequency=len(rows))
    naive_fp_rate = sum(unfiltered.match(row_text(row)) is not None for row in clean) / len(clean)
    print(f"  false-positive rate with no generic filtering: {naive_fp_rate:.3f}")
    assert recall >= 0.95
    assert fp_rate <= 0.01
    assert naive_fp_rate >= 0.1
    assert len(kept) + len(removed) == len(rows)


def test_normalisation_lowercases_applies_nfkc_removes_punctuation_and_collapses_whitespace():
    assert normalize("  The PATIENT's\tB.P. was 120/80 mm Hg!\n") == "the patients bp was 12080 mm hg"
    # NFKC: the "fi" ligature, full-width letters, the Roman numeral four; typographic dashes and quotes go.
    assert normalize("\ufb01brosis of the \uff2c\uff35\uff2e\uff27 \u2014 \u201cstage \u2163\u201d") == (
        "fibrosis of the lung stage iv")
    assert normalize("Crohn\u2019s disease: anti-TNF_alpha") == "crohns disease antitnfalpha"


def items(*records: tuple[str, str, str]) -> list[tuple[str, str, list[str]]]:
    """Index input from (task, id, question) with four options appended to make the text."""
    return [(task, item_id, [f"{question}\nA. Alpha\nB. Beta\nC. Gamma\nD. Delta", question])
            for task, item_id, question in records]


def test_a_specific_question_alone_is_caught_from_eight_words_but_not_at_seven():
    index = BenchmarkIndex(items(("mmlu_anatomy", "a1", "Which nerve supplies the lateral rectus muscle?"),
                                 ("mmlu_anatomy", "a2", "Which cranial nerve supplies the superior oblique muscle?")))
    assert index.match("Which nerve supplies the lateral rectus muscle?") is None  # 7 words: not specific
    found = index.match("Revision: which cranial nerve supplies the superior oblique muscle? I always forget.")
    assert (found.task, found.item_id, found.overlap) == (
        "mmlu_anatomy", "a2", "which cranial nerve supplies the superior oblique muscle")


def test_a_question_in_more_items_than_max_item_frequency_is_generic():
    stem = "Which of the following is the most likely diagnosis?"
    generic = items(*[("medqa_4options", f"q{k}", stem) for k in range(6)])
    assert BenchmarkIndex(generic).match(f"A 30-year-old man has a rash. {stem}") is None
    assert BenchmarkIndex(generic, max_item_frequency=6).match(f"A 30-year-old man has a rash. {stem}").item_id == "q0"
    assert BenchmarkIndex(generic[:5]).match(stem).item_id == "q0"  # five items: still specific


def test_an_ngram_made_mostly_of_a_generic_phrase_is_not_a_match():
    stem = "Which of the following is the most appropriate next step in management?"  # 12 words
    cases = [f"A {40 + k}-year-old man has {condition}. {stem}" for k, condition in enumerate(
        ["a painful swollen knee", "sudden loss of vision", "crushing chest pain", "a tender thyroid",
         "bloody diarrhoea", "a pulsatile abdominal mass"])]
    index = BenchmarkIndex([("medqa_4options", f"q{k}", [case, case]) for k, case in enumerate(cases)])
    # Only "mass" besides the 12 generic words: the 13-gram "mass which of the following ..." is not specific.
    assert index.match(f"Imaging showed an adrenal mass. {stem}") is None
    assert index.match(f"Notes: a 45-year-old man has a pulsatile abdominal mass. {stem}").item_id == "q5"


def test_punctuation_turned_into_spaces_still_matches_a_short_question():
    index = BenchmarkIndex(items(("medmcqa", "m1", "Which antitubercular drug causes red-orange discoloration "
                                                   "of urine?")))
    for copy in ("which antitubercular drug causes red orange discoloration of urine",
                 "Which antitubercular drug causes redorange discoloration of urine"):
        assert index.match(copy).item_id == "m1"


def test_a_question_several_items_share_is_reported_for_the_first_of_them():
    question = "Which hormone is secreted by the delta cells of the pancreatic islets?"
    index = BenchmarkIndex(items(("mmlu_college_medicine", "c7", question),
                                 ("mmlu_professional_medicine", "p2", question)))
    assert (index.match(question).task, index.match(question).item_id) == ("mmlu_college_medicine", "c7")


def test_threshold_counts_shared_keys():
    index = BenchmarkIndex(items(("pubmedqa", "p1", "Does melatonin reduce postoperative delirium in elderly hip "
                                                    "fracture patients?")))
    text = "Does melatonin reduce postoperative delirium in elderly hip fracture patients?"
    assert index.match(text).matches == 1
    assert index.match(text, threshold=2) is None


def test_row_text_joins_user_and_assistant_turns_and_dpo_answers():
    sft = chat("What causes scurvy?", "Vitamin C deficiency.")
    assert row_text(sft) == "What causes scurvy?\nVitamin C deficiency."
    dpo = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q?"}],
           "chosen": {"role": "assistant", "content": "Good."}, "rejected": {"role": "assistant", "content": "Bad."}}
    assert row_text(dpo) == "Q?\nGood.\nBad."
    with pytest.raises(ValueError, match="no 'messages' list"):
        row_text({"text": "plain"})


def test_the_folder_must_hold_every_task_with_well_formed_items(tmp_path):
    item = {"id": "x1", "text": "Koplik spots are pathognomonic of which viral infection? A. Measles",
            "question": "Koplik spots are pathognomonic of which viral infection?"}
    for task in TASKS[1:]:
        write_jsonl(tmp_path / f"{task}.jsonl", [item])
    with pytest.raises(FileNotFoundError, match="no benchmark file for medmcqa"):
        BenchmarkIndex.from_folder(tmp_path)
    (tmp_path / "medmcqa.jsonl").write_text(json.dumps({"id": "m1", "text": "Some text"}) + "\n")
    with pytest.raises(ValueError, match=r"medmcqa.jsonl line 1: missing field 'question'"):
        BenchmarkIndex.from_folder(tmp_path)
    write_jsonl(tmp_path / "medmcqa.jsonl", [item, item])
    with pytest.raises(ValueError, match="medmcqa: item id 'x1' appears twice"):
        BenchmarkIndex.from_folder(tmp_path)
    write_jsonl(tmp_path / "medmcqa.jsonl", [item])
    assert BenchmarkIndex.from_folder(tmp_path).items_by_task() == dict.fromkeys(TASKS, 1)


def test_command_writes_clean_rows_contaminated_rows_and_a_manifest(corpus, tmp_path, capsys):
    _, folder, planted, clean = corpus
    rows = [clean[0], planted[0][2], clean[1], planted[-1][2]]
    source = write_jsonl(tmp_path / "train.jsonl", rows)
    out = tmp_path / "out" / "train.clean.jsonl"
    manifest = main([str(source), "--benchmarks", str(folder), "--out", str(out)])

    assert read_jsonl(out) == [clean[0], clean[1]]
    removed = read_jsonl(tmp_path / "out" / "train.clean.contaminated.jsonl")
    assert [(r["where"], r["task"], r["item_id"], r["row"]) for r in removed] == [
        ("line 2", planted[0][1]["id"].rsplit("-", 1)[0], planted[0][1]["id"], rows[1]),
        ("line 4", planted[-1][1]["id"].rsplit("-", 1)[0], planted[-1][1]["id"], rows[3]),
    ]
    assert all(r["overlap"] in normalize(row_text(r["row"])) for r in removed)
    assert json.loads((tmp_path / "out" / "train.clean.manifest.json").read_text()) == manifest
    assert manifest["input"] == {"path": str(source), "sha256": sha256_file(source), "rows": 4}
    assert manifest["output"]["rows"] + manifest["contaminated"]["rows"] == manifest["input"]["rows"]
    assert manifest["output"]["sha256"] == sha256_file(out)
    assert [f["task"] for f in manifest["benchmarks"]["files"]] == list(TASKS)
    assert all(f["sha256"] == sha256_file(Path(f["path"])) for f in manifest["benchmarks"]["files"])
    assert manifest["settings"] == {"n": 13, "min_question_words": 8, "max_item_frequency": 5, "threshold": 1}
    assert manifest["benchmarks"]["whole_questions"] > 0 and manifest["benchmarks"]["generic_phrases"] > 0
    assert "4 rows -> 2 clean" in capsys.readouterr().out


def test_command_stops_with_a_message_when_a_benchmark_file_is_missing(tmp_path):
    source = write_jsonl(tmp_path / "train.jsonl", [chat("What causes scurvy?", "Vitamin C deficiency.")])
    with pytest.raises(SystemExit, match="no benchmark file for medmcqa, medqa_4options"):
        main([str(source), "--benchmarks", str(tmp_path / "missing"), "--out", str(tmp_path / "out.jsonl")])
    assert not (tmp_path / "out.jsonl").exists()


def test_allow_partial_checks_the_benchmarks_present_and_names_the_others(tmp_path, capsys):
    folder = tmp_path / "benchmarks"
    folder.mkdir()
    shipped = Path(__file__).resolve().parents[1] / "data_prep/samples/benchmarks/pubmedqa.jsonl"
    (folder / "pubmedqa.jsonl").write_bytes(shipped.read_bytes())
    question = read_jsonl(folder / "pubmedqa.jsonl")[0]["question"]
    source = write_jsonl(tmp_path / "train.jsonl", [chat("What causes scurvy?", "Vitamin C deficiency."),
                                                    chat(question, "Yes.")])
    out = tmp_path / "out.jsonl"
    with pytest.raises(SystemExit, match=r"no benchmark file for medmcqa, .*prepare them with `python -m eval "
                                         r"prepare --all --out .*`.*or pass --allow-partial to check against the 1 "
                                         r"present"):
        main([str(source), "--benchmarks", str(folder), "--out", str(out)])
    assert not out.exists()

    manifest = main([str(source), "--benchmarks", str(folder), "--out", str(out), "--allow-partial"])
    assert manifest["output"]["rows"] == 1 and manifest["contaminated"]["by_task"] == {"pubmedqa": 1}
    assert manifest["benchmarks"]["checked"] == ["pubmedqa"]
    assert manifest["benchmarks"]["not_checked"] == [task for task in TASKS if task != "pubmedqa"]
    assert len(manifest["benchmarks"]["not_checked"]) == 8
    assert json.loads((tmp_path / "out.manifest.json").read_text()) == manifest
    assert "checked against 1 of 9 benchmarks: pubmedqa; NOT checked: medmcqa, medqa_4options" in \
        capsys.readouterr().out


def test_allow_partial_still_refuses_a_folder_without_any_benchmark(tmp_path):
    source = write_jsonl(tmp_path / "train.jsonl", [chat("What causes scurvy?", "Vitamin C deficiency.")])
    with pytest.raises(SystemExit, match=r"no benchmark file for medmcqa.*make benchmarks`\)$"):
        main([str(source), "--benchmarks", str(tmp_path), "--out", str(tmp_path / "o.jsonl"), "--allow-partial"])
